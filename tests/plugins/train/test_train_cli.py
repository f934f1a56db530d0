"""``visionatlas train`` and ``visionatlas evaluate`` on the built-in digits (classification)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import visionatlas as va
from visionatlas.cli import main


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where builtin:digits is written once for these tests."""
    return tmp_path_factory.mktemp("datasets")


def _quick(cache_dir: Path) -> list[str]:
    return [
        "--set", "epochs=1", "--set", "input_size=32", "--set", "num_workers=0",
        "--set", "limit_train_batches=2", "--set", "limit_val_batches=2",
        "--set", f"cache_dir={json.dumps(str(cache_dir))}", "--no-progress",
    ]  # fmt: skip


def test_train_then_evaluate_the_digits_demo(
    tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    argv = ["train", "classification", "mobilenet_v3_small", "builtin:digits", "--out", str(run)]
    assert main([*argv, *_quick(cache_dir)]) == 0
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines[0].startswith("training classification/mobilenet_v3_small on builtin:digits")
    assert lines[1].startswith("config: {")
    assert [line[:10] for line in lines[2:]] == ["epoch 1/1 ", "done: 1 ep"]  # nothing else
    assert "val/acc1" in lines[2]
    assert json.loads((run / "labels.json").read_text())["labels"] == [str(d) for d in range(10)]
    assert (run / "checkpoints" / "best" / "checkpoint.json").is_file()
    evaluate = ["evaluate", str(run), "builtin:digits", "--json", "--set", "limit_val_batches=1"]
    assert main([*evaluate, "--set", f"cache_dir={json.dumps(str(cache_dir))}"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "classification"
    assert {"acc1", "acc5", "f1", "loss"} <= set(report["metrics"])
    assert len(report["matrices"]["confmat"]) == 10
    # a finished run resumes to nothing left to do
    assert main(["train", "--resume", str(run), "--no-progress", "-q"]) == 0
    assert "done: 1 epoch" in capsys.readouterr().err


def test_usage_errors_exit_2_and_data_errors_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "classification"]) == 2
    assert "give TASK ARCH DATA, or --resume RUN_DIR" in capsys.readouterr().err
    argv = ["train", "classification", "resnet18", str(tmp_path / "none"), "--out", str(tmp_path)]
    assert main([*argv, "--set", "optimizer=adamx"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "unknown optimizer 'adamx'; did you mean 'adam' or 'adamw'?" in err
    assert main([*argv, "--set", "epochs"]) == 2
    assert "--set expects KEY=VALUE" in capsys.readouterr().err
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert str(tmp_path / "none") in err
    assert main(["train", "classification", "resnet1", "x", "--out", str(tmp_path / "o")]) == 2
    assert "did you mean 'resnet18'" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "missing"), "builtin:digits"]) == 1
    assert "no training run or checkpoint" in capsys.readouterr().err


def test_print_config_and_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "train.yaml"
    config.write_text("epochs: 9\nscheduler: step\n")
    argv = ["train", "classification", "resnet18", "DATA", "--config", str(config)]
    assert main([*argv, "--set", "epochs=4", "--print-config"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["epochs"] == 4
    assert resolved["scheduler"] == {"name": "step", "params": {}}
    defaults = va.get_architecture("classification", "resnet18").hyperparameters
    assert resolved["batch_size"] == defaults.batch_size  # unset: the catalog's default
    assert main(["train", "--schema"]) == 0
    assert "probe_epochs" in json.loads(capsys.readouterr().out)["properties"]


def test_registering_the_commands_imports_no_torch() -> None:
    code = (
        "import sys, visionatlas as va\n"
        "names = [c.name for c in va.get_catalog().commands()]\n"
        "assert {'train', 'evaluate'} <= set(names), names\n"
        "heavy = {'torch', 'lightning', 'pydantic'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
