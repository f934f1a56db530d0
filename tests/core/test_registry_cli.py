"""``visionatlas registry`` and ``visionatlas export``: in-process and as a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch.optim.swa_utils import update_bn

import visionatlas as va
from visionatlas.cli import main
from visionatlas.lifecycle.versioning import ModelRegistry


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    """A registry with two versions of ``flowers`` and one of ``birds``."""
    root = tmp_path / "registry"
    registry = ModelRegistry(root)
    torch.manual_seed(0)
    model = va.create_model("classification", "mobilenet_v3_small", num_classes=3)
    registry.register("flowers", "1.0.0", model, tags=["prod"], metrics={"top1": 0.9})
    registry.register("flowers", "1.1.0-rc.1", model, tags=["dev"], description="candidate")
    birds = va.compose_model("mobilenet_v3_small", "gem", num_outputs=2)
    generator = torch.Generator().manual_seed(3)  # outputs that depend on the input
    update_bn([torch.rand(4, 3, 64, 64, generator=generator) for _ in range(2)], birds)
    registry.register("birds", "0.1.0", birds.eval())
    return root


def test_registry_list_table_json_and_filters(
    filled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "registry", "list", "--registry", str(filled))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "Name",
        "Version",
        "Task",
        "Architecture",
        "Classes",
        "Params",
        "Tags",
        "Created",
    ]
    assert [line.split()[:2] for line in lines[2:5]] == [
        ["birds", "0.1.0"],
        ["flowers", "1.0.0"],
        ["flowers", "1.1.0-rc.1"],
    ]
    assert "mobilenet_v3_small+gem" in out
    assert "3 model versions in" in out
    code, out, _ = run(capsys, "registry", "list", "--registry", str(filled), "--tag", "prod")
    assert code == 0
    assert "flowers" in out
    assert "birds" not in out
    code, out, _ = run(capsys, "registry", "list", "flow", "--registry", str(filled), "--json")
    data = json.loads(out)
    assert [(d["name"], d["version"]) for d in data] == [
        ("flowers", "1.0.0"),
        ("flowers", "1.1.0-rc.1"),
    ]
    assert data[0]["metrics"] == {"top1": 0.9}
    code, out, _ = run(capsys, "registry", "list", "zebra", "--registry", str(filled))
    assert code == 0
    assert "No registered models match pattern 'zebra'" in out


def test_registry_show_and_delete(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "registry", "show", "flowers", "--registry", str(filled))
    assert code == 0
    assert out.startswith("flowers 1.1.0-rc.1:")  # the latest by semantic version
    assert "All versions  1.0.0, 1.1.0-rc.1" in out
    assert "candidate" in out
    code, out, _ = run(capsys, "registry", "show", "flowers", "1.0.0", "--registry", str(filled))
    assert "top1: 0.9" in out
    code, out, _ = run(
        capsys, "registry", "show", "flowers", "1.0.0", "--json", "--registry", str(filled)
    )
    shown = json.loads(out)
    assert shown["tags"] == ["prod"]
    assert shown["all_versions"] == ["1.0.0", "1.1.0-rc.1"]
    assert Path(shown["weights"]["path"]).is_file()

    code, out, _ = run(capsys, "registry", "delete", "flowers", "1.0.0", "--registry", str(filled))
    assert code == 0
    assert "Deleted flowers 1.0.0" in out
    assert ModelRegistry(filled).versions("flowers") == ["1.1.0-rc.1"]


def test_registry_errors_exit_2(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "registry", "show", "flower", "--registry", str(filled))
    assert code == 2
    assert "unknown registered model 'flower'; did you mean 'flowers'?" in err
    code, _, err = run(capsys, "registry", "show", "flowers", "2.0.0", "--registry", str(filled))
    assert code == 2
    assert "unknown version '2.0.0' of model 'flowers'" in err
    code, _, err = run(capsys, "registry", "delete", "flowers", "1.0", "--registry", str(filled))
    assert code == 2
    assert "invalid version '1.0'" in err
    code, _, err = run(capsys, "registry", "delete", "flowers", "latest", "--registry", str(filled))
    assert code == 2
    assert "explicit version" in err
    code, _, _ = run(capsys, "registry", "--registry", str(filled))
    assert code == 2  # no action


def test_export_architecture_to_onnx_with_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "model.onnx"
    code, out, err = run(
        capsys,
        "export",
        "classification",
        "resnet18",
        "--num-classes",
        "4",
        "--input-size",
        "64",
        "--out",
        str(out_file),
        "--check",
    )
    assert code == 0, err
    assert "Exported classification/resnet18 (random weights)" in out
    assert "input   images (N, 3, 64, 64)" in out
    assert "outputs output (N, 4)" in out
    assert "checked with onnxruntime" in out
    session = onnxruntime.InferenceSession(str(out_file), providers=["CPUExecutionProvider"])
    assert session.run(None, {"images": np.zeros((1, 3, 64, 64), np.float32)})[0].shape == (1, 4)


def test_export_weights_from_the_registry_and_a_checkpoint(
    filled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys,
        "export",
        "--weights",
        "birds@0.1.0",
        "--registry",
        str(filled),
        "--format",
        "torch-export",
        "--input-size",
        "64",
        "--out",
        str(tmp_path / "birds.pt2"),
        "--check",
    )
    assert code == 0, err
    assert "registered model birds@0.1.0" in out
    assert "checked against the model: max |difference|" in out
    program = va.load_program(tmp_path / "birds.pt2").module()
    model = ModelRegistry(filled).load("birds")
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(images)
        assert float((expected[0] - expected[1]).abs().max()) > 1e-3
        assert torch.allclose(program(images), expected, atol=1e-5)

    checkpoint = va.save_checkpoint(model, path=tmp_path / "ckpt")
    code, out, err = run(
        capsys,
        "export",
        "custom",
        "mobilenet_v3_small+gem",
        "--weights",
        str(checkpoint),
        "--input-size",
        "64",
        "--out",
        str(tmp_path / "ckpt.onnx"),
        "--json",
    )
    assert code == 2  # a composed model has no catalog architecture to name
    code, out, err = run(
        capsys,
        "export",
        "--weights",
        str(checkpoint),
        "--input-size",
        "64",
        "--static-batch",
        "--out",
        str(tmp_path / "ckpt.onnx"),
        "--json",
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["source"] == f"checkpoint {checkpoint}"
    assert data["dynamic_batch"] is False


def _visionatlas(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run the ``visionatlas`` command in a fresh process (no VISIONATLAS_* variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VISIONATLAS_")}
    return subprocess.run(
        [sys.executable, "-m", "visionatlas", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def _unwritable_directory(tmp_path: Path) -> Path | None:
    """A directory this process cannot create files in, if there is one."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    for candidate in (locked, Path("/sys")):  # root writes to any mode; not to sysfs
        try:
            with tempfile.TemporaryFile(dir=candidate):
                pass
        except OSError:
            return candidate
    return None


@pytest.mark.parametrize("opset", ["1", "999"])
def test_export_refuses_an_opset_the_exporter_does_not_support(tmp_path: Path, opset: str) -> None:
    from visionatlas.lifecycle.onnx_export import supported_opsets

    lowest, highest = supported_opsets()
    target = tmp_path / "model.onnx"
    result = _visionatlas(
        "export", "classification", "resnet18", "--opset", opset, "--out", str(target)
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"visionatlas: error: --opset {opset} is not supported; the installed exporter "
        f"accepts opsets {lowest} to {highest}"
    ]
    assert not target.exists()


def test_export_reports_the_opset_written_to_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "model.onnx"
    code, out, err = run(
        capsys, "export", "classification", "mobilenet_v3_small", "--input-size", "64",
        "--opset", "20", "--out", str(target), "--json",
    )  # fmt: skip
    assert code == 0, err
    opsets = {o.domain: o.version for o in onnx.load(str(target)).opset_import}
    assert json.loads(out)["opset"] == opsets[""] == 20


@pytest.mark.parametrize("export_format", ["onnx", "torch-export"])
def test_export_out_must_be_a_file_in_a_writable_directory(
    tmp_path: Path, export_format: str
) -> None:
    directory = tmp_path / "exports"
    directory.mkdir()
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a directory\n")
    suffix = ".onnx" if export_format == "onnx" else ".pt2"
    cases = [
        (directory, f"is a directory; give a file path in a directory you can write to, such "
                    f"as {directory / ('model' + suffix)}"),
        (a_file / f"model{suffix}", f"{a_file} is a file, not a directory; give a file path"),
    ]  # fmt: skip
    unwritable = _unwritable_directory(tmp_path)
    if unwritable is not None:
        cases.append((unwritable / f"model{suffix}", f"cannot write in {unwritable} ("))
    for out, message in cases:
        result = _visionatlas(
            "export", "classification", "resnet18", "--format", export_format, "--out", str(out)
        )
        assert result.returncode == 2, result.stderr
        (line,) = result.stderr.splitlines()  # one line, no traceback
        assert line.startswith(f"visionatlas: error: --out {out}"), line
        assert message in line
        assert result.stdout == ""
    assert list(directory.iterdir()) == []
    assert a_file.read_text() == "not a directory\n"


def test_export_out_naming_a_new_directory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "export", "classification", "resnet18", "--out", "newdir/")
    assert code == 2
    assert "'newdir/' names a directory; give a file path such as newdir/model.onnx" in err
    assert list(tmp_path.iterdir()) == []  # no file called newdir


def test_export_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = str(tmp_path / "x.onnx")
    code, _, err = run(capsys, "export", "classification", "resnt18", "--out", target)
    assert code == 2
    assert "did you mean 'resnet18'" in err
    code, _, err = run(
        capsys, "export", "classification", "resnet18", "--config", '{"nope": 1}', "--out", target
    )
    assert code == 2
    assert "nope" in err
    code, _, err = run(
        capsys, "export", "classification", "resnet18", "--config", "[", "--out", target
    )
    assert code == 2
    assert "bad --config" in err
    code, _, err = run(capsys, "export", "--out", target)
    assert code == 2
    code, _, err = run(
        capsys, "export", "--weights", "ghost@1.0.0", "--registry", str(tmp_path), "--out", target
    )
    assert code == 2
    assert "unknown registered model 'ghost'" in err
    assert not Path(target).exists()
    program = str(tmp_path / "x.pt2")
    code, _, err = run(
        capsys, "export", "classification", "resnet18", "--format", "torch-export",
        "--opset", "17", "--out", program,
    )  # fmt: skip
    assert code == 2
    assert "--opset applies to --format onnx only" in err
    assert not Path(program).exists()


def test_registry_list_as_a_process_imports_no_torch(filled: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from visionatlas.cli import main
        code = main(["registry", "list", "--registry", {str(filled)!r}, "--json"])
        heavy = sorted(m for m in ("torch", "torchvision", "pydantic") if m in sys.modules)
        print("HEAVY", heavy, file=sys.stderr)
        sys.exit(code or (3 if heavy else 0))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert [entry["name"] for entry in json.loads(result.stdout)] == ["birds", "flowers", "flowers"]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "visionatlas",
            "registry",
            "show",
            "flowers",
            "1.0.0",
            "--registry",
            str(filled),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "flowers 1.0.0:" in result.stdout
