"""``visionatlas anomaly``: fit, predict and benchmark through the configured parser."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from anomaly_helpers import png_header_bomb, textures, write_pngs
from PIL import Image

from visionatlas.cli import main
from visionatlas_anomaly.cli import configure
from visionatlas_anomaly.config import UninformedStudentsConfig
from visionatlas_anomaly.errors import DeviceError
from visionatlas_anomaly.model import UninformedStudents
from visionatlas_anomaly.synthetic import SplitSizes, generate_dataset

TINY_FLAGS = [
    "--patch-sizes", "17", "--students", "2", "--teacher-steps", "2", "--student-steps", "5",
    "--width", "0.25", "--no-progress",
]  # fmt: skip


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="visionatlas anomaly")
    configure(parser)
    args = parser.parse_args(list(argv))
    code: int = args.handler(args)
    return code


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("anomaly-data")
    sizes = SplitSizes(train=4, validation=2, test_good=1, test_per_defect=1)
    return generate_dataset(root, ["stripes"], sizes=sizes, image_size=32) / "stripes"


def test_fit_then_predict(
    dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VISIONATLAS_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    model = tmp_path / "model"
    with pytest.warns(UserWarning, match="self-supervised"):
        assert _run("fit", str(dataset), "--out", str(model), *TINY_FLAGS) == 0
    assert (model / "model.safetensors").is_file()
    assert (model / "config.json").is_file()
    assert "fitted on 4 images" in capsys.readouterr().out

    out = tmp_path / "pred"
    images = [str(dataset / "test" / "good"), str(dataset / "test" / "hole" / "000.png")]
    assert _run("predict", str(model), *images, "--out", str(out)) == 0
    scores = json.loads((out / "scores.json").read_text())
    assert len(scores["images"]) == 2
    assert isinstance(scores["threshold"], float)
    maps = np.load(out / "anomaly_maps.npz")
    assert sorted(maps.files) == ["000", "000"] or len(maps.files) >= 1
    overlay = Image.open(out / "000_overlay.png")
    assert overlay.size == (32, 32)
    assert overlay.mode == "RGB"


def test_fit_errors_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert _run("fit", str(tmp_path / "empty"), "--out", str(tmp_path / "m"), *TINY_FLAGS) == 1
    assert "holds no images" in capsys.readouterr().err
    bad = ["fit", str(tmp_path), "--out", str(tmp_path / "m"), "--patch-sizes", "31"]
    assert _run(*bad) == 2  # invalid options are usage errors
    assert "unsupported patch sizes" in capsys.readouterr().err


def test_predict_with_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run("predict", str(tmp_path / "nothing"), str(tmp_path), "--out", str(tmp_path)) == 1
    assert "no saved detector" in capsys.readouterr().err


def test_benchmark_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "benchmark", "--quick", "--out", str(tmp_path), "--categories", "disc",
        "--set", "teacher_steps=1", "--set", "student_steps=3", "--set", "progress=false",
        "--set", "teacher_distillation=\"off\"",
    ]  # fmt: skip
    assert _run(*argv) == 0
    out = capsys.readouterr().out
    assert "disc" in out
    assert "mean" in out
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["preset"] == "quick"
    row = results["categories"][0]
    assert row["category"] == "disc"
    assert all(0.0 <= row[k] <= 1.0 for k in ("image_auroc", "pixel_auroc", "pro"))


def test_help_through_the_core_command_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "visionatlas", "anomaly", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for command in ("fit", "predict", "benchmark", "speed"):
        assert command in result.stdout


@pytest.mark.parametrize("nnpack_flag", [[], ["--no-nnpack"]])
def test_speed_command_prints_one_row_per_patch_size(
    capsys: pytest.CaptureFixture[str], nnpack_flag: list[str]
) -> None:
    code = _run(
        "speed", "--image-size", "24", "--patch-sizes", "17", "33", "--sampled-pixels", "3",
        "--width", "0.0625", *nnpack_flag,
    )  # fmt: skip
    assert code == 0
    rows = capsys.readouterr().out.splitlines()
    assert [row.split()[0] for row in rows] == ["p=17", "p=33"]
    assert all(("(no NNPACK)" in row) == bool(nnpack_flag) for row in rows)
    assert _run("speed", "--width", "0") == 1


# -- devices (issue 11: `--device tpu` gave a traceback) -------------------------------------
def _one_error_line(err: str) -> str:
    assert err.count("\n") == 1, err
    assert err.startswith("visionatlas anomaly: error: "), err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("command", ["fit", "predict"])
def test_unknown_device_is_a_usage_error(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if command == "fit":
        argv = ["anomaly", "fit", str(tmp_path), "--out", str(tmp_path / "m"), "--device", "tpu"]
    else:
        argv = ["anomaly", "predict", str(tmp_path / "m"), str(tmp_path), "--out", str(tmp_path)]
        argv += ["--device", "tpu"]
    assert main(argv) == 2
    err = _one_error_line(capsys.readouterr().err)
    assert "device 'tpu'" in err
    assert "accepted on this machine: 'cpu'" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_usage_error(
    fitted_detector: UninformedStudents, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["anomaly", "fit", str(tmp_path), "--out", str(tmp_path / "m"), "--device", "cuda"]
    assert main(argv) == 2
    assert "device 'cuda' is not available" in _one_error_line(capsys.readouterr().err)
    # A detector saved for CUDA: loading it here says so, and how to get around it.
    model = fitted_detector.save(tmp_path / "model")
    meta = model / "config.json"
    metadata = json.loads(meta.read_text(encoding="utf-8"))
    metadata["config"]["device"] = "cuda:1"
    meta.write_text(json.dumps(metadata), encoding="utf-8")
    with pytest.raises(DeviceError, match="pass device='cpu'"):
        UninformedStudents.load(model)
    argv = ["anomaly", "predict", str(model), str(tmp_path), "--out", str(tmp_path / "p")]
    assert main(argv) == 2
    assert "--device cpu" in _one_error_line(capsys.readouterr().err)
    assert UninformedStudents.load(model, device="cpu").device == torch.device("cpu")
    with pytest.raises(DeviceError, match="'cpu'"):
        UninformedStudents(UninformedStudentsConfig(device="cuda")).fit(textures(2))


def test_device_error_in_a_real_process_has_no_traceback(tmp_path: Path) -> None:
    argv = ["anomaly", "predict", str(tmp_path), str(tmp_path), "--out", str(tmp_path)]
    result = subprocess.run(
        [sys.executable, "-m", "visionatlas", *argv, "--device", "tpu"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    _one_error_line(result.stderr)


# -- decompression bombs (issue 11) -------------------------------------------------------------
@pytest.mark.parametrize("command", ["fit", "predict"])
def test_decompression_bomb_is_refused_in_one_line(
    command: str,
    fitted_detector: UninformedStudents,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "images"
    write_pngs(folder, textures(2, seed=0))
    bomb = png_header_bomb(folder / "bomb.png", 100_000, 100_000)
    if command == "fit":
        argv = ["anomaly", "fit", str(folder), "--out", str(tmp_path / "m"), *TINY_FLAGS]
    else:
        model = fitted_detector.save(tmp_path / "model")
        argv = ["anomaly", "predict", str(model), str(folder), "--out", str(tmp_path / "p")]
    assert main(argv) == 1  # as for any unreadable image
    err = _one_error_line(capsys.readouterr().err)
    assert str(bomb) in err
    assert f"{Image.MAX_IMAGE_PIXELS:,}-pixel limit" in err


# -- outputs and sizes that cannot work are usage errors, found before any work --------------
def test_unusable_out_and_image_size_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_pngs(tmp_path / "images", textures(2, seed=0))
    taken = tmp_path / "taken"
    taken.write_text("a file", encoding="utf-8")
    fit = ["anomaly", "fit", str(tmp_path / "images"), *TINY_FLAGS]
    assert main([*fit, "--out", str(taken)]) == 2
    assert "exists and is not a directory" in _one_error_line(capsys.readouterr().err)
    assert main([*fit, "--out", str(tmp_path / "images"), "--image-size", "0"]) == 2
    assert "from 1 to 4096" in capsys.readouterr().err
    predict = ["anomaly", "predict", str(tmp_path / "m"), str(tmp_path / "images")]
    assert main([*predict, "--out", str(taken)]) == 2
    assert "exists and is not a directory" in _one_error_line(capsys.readouterr().err)
