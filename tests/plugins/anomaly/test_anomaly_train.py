"""``visionatlas train anomaly_detection ...``: the detector's own fit through the engine.

The task's training is a ``CustomFitTraining``: the engine layers and checks the config,
reads the MVTec layout (or ``builtin:NAME``) through it, runs the detector's fit (not
Lightning's loop), writes the run folder, and ``visionatlas evaluate RUN_DIR DATA`` reports
image AUROC, pixel AUROC and PRO on the test split. Fits use the tiny settings of
``anomaly_helpers.TINY`` on 32x32 images (a few seconds each on one thread).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from anomaly_helpers import TINY

import visionatlas as va
from visionatlas.cli import main
from visionatlas.errors import ImageReadError
from visionatlas.testing import CheckFailed, check_training
from visionatlas.training.images import SkippedImageWarning
from visionatlas.training.protocol import DataRequest
from visionatlas_anomaly.model import UninformedStudents
from visionatlas_anomaly.synthetic import SplitSizes, generate_dataset
from visionatlas_anomaly.trainable import AnomalyTraining

TASK, ARCH = "anomaly_detection", "uninformed_students_resnet18"
TRAIN = ["train", TASK, ARCH]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny networks fit fastest (and steadiest on a shared machine) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def category(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic MVTec AD category at 32x32: 6 train, 2 validation, 6 test images."""
    root = tmp_path_factory.mktemp("mvtec")
    sizes = SplitSizes(train=6, validation=2, test_good=2, test_per_defect=1)
    return generate_dataset(root, ["stripes"], sizes=sizes, image_size=32) / "stripes"


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A YAML training config: the image size and the tiny detector's options (student
    steps come from ``--set`` in the tests, to show both layers reach the model)."""
    options = {k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()}
    options.pop("student_steps")
    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    path.write_text(yaml.safe_dump({"input_size": 32, "model": options}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry")


@pytest.fixture(scope="module")
def fitted_run(
    category: Path, tiny_config: Path, registry: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    """One real fit through the command line, registered as det@1.0.0; its run folder and
    what it printed."""
    run = tmp_path_factory.mktemp("runs") / "run"
    argv = [*TRAIN, str(category), "--out", str(run), "--config", str(tiny_config)]
    argv += ["--set", "model.student_steps=30", "--set", "seed=3", "--no-progress"]
    argv += ["--register", "det@1.0.0", "--registry", str(registry)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    return run, err.getvalue()


def test_train_writes_the_run_folder(fitted_run: tuple[Path, str]) -> None:
    run, printed = fitted_run
    lines = printed.splitlines()
    assert lines[0].startswith(f"training {TASK}/{ARCH} on ")
    assert "with its own fit: 6 normal images to train on, 2 in validation/good" in lines[0]
    config_line = json.loads(lines[1].removeprefix("config: "))
    assert set(config_line) == {
        "accelerator",
        "cache_dir",
        "input_size",
        "model",
        "seed",
        "strict",
        "val_fraction",
    }  # only what the fit honours: no optimizer, no epochs
    assert lines[2].startswith("fitting patch sizes 17: 5 teacher and 30 student steps each")
    assert lines[-1].startswith("done: fitted in ")
    assert "self_supervised teachers" in lines[-1]

    stored = json.loads((run / "config.json").read_text())
    assert (stored["task"], stored["architecture"], stored["fit"]) == (TASK, ARCH, "custom")
    assert stored["config"]["seed"] == 3
    assert stored["config"]["input_size"] == [32, 32]
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["train_images"], summary["val_images"]) == (6, 2)
    assert math.isfinite(summary["metrics"]["threshold"])
    assert summary["details"]["teacher_source"] == "self_supervised"
    assert summary["registered"] == "det@1.0.0"
    assert lines[-1].endswith("; registered det@1.0.0")
    header, *rows = (run / "metrics.csv").read_text().splitlines()
    assert header == "step,p17/student_loss,p17/teacher_loss"
    assert len(rows) == 30  # one per student step (the 5 teacher steps in the first rows)
    assert (run / "plots" / "student_loss.png").is_file()
    assert (run / "plots" / "teacher_loss.png").is_file()
    assert not (run / "checkpoints").exists()

    detector = UninformedStudents.load(run / "model")  # the plugin's own safe format
    assert sorted(p.name for p in (run / "model").iterdir()) == ["config.json", "model.safetensors"]
    assert detector.threshold == pytest.approx(summary["metrics"]["threshold"])
    assert detector.image_size == (32, 32)
    options = detector.config
    assert (options.student_steps, options.seed, options.width) == (30, 3, 0.25)  # --set, file
    assert options.patch_sizes == (17,)


def test_evaluate_reports_the_anomaly_metrics(
    fitted_run: tuple[Path, str], category: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, _ = fitted_run
    assert main(["evaluate", str(run), str(category), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == TASK
    assert report["num_images"] == 6
    assert set(report["metrics"]) == {"image_auroc", "pixel_auroc", "pro", "accuracy"}
    assert all(0.0 <= v <= 1.0 for v in report["metrics"].values())
    assert report["labels"] == ["good", "anomalous"]
    matrix = report["matrices"]["confmat"]
    assert [sum(row) for row in matrix] == [2, 4]  # true good, true anomalous
    assert main(["evaluate", str(run), str(category)]) == 0
    out = capsys.readouterr().out
    assert "6 images" in out
    assert "image_auroc" in out
    assert "pixel_auroc" in out
    assert " pro " in out


def test_the_registered_detector_loads_fitted_and_evaluates_like_the_run(
    fitted_run: tuple[Path, str],
    category: Path,
    registry: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from visionatlas.lifecycle.versioning.store import ModelRegistry

    run, _ = fitted_run
    saved = UninformedStudents.load(run / "model")
    store = ModelRegistry(registry)
    entry = store.get("det", "1.0.0")
    assert entry.task == TASK
    assert set(entry.tags) >= {"trained", TASK}
    assert entry.metrics["threshold"] == pytest.approx(saved.threshold)
    assert entry.metrics["training"]["config"]["input_size"] == [32, 32]
    loaded = store.load("det", "1.0.0")
    assert isinstance(loaded, UninformedStudents)
    assert (loaded.threshold, loaded.image_size) == (saved.threshold, (32, 32))
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        loaded.predict(images).anomaly_maps, saved.predict(images).anomaly_maps
    )
    reports = []
    for source in (str(run), "det@1.0.0"):
        argv = ["evaluate", source, str(category), "--json", "--registry", str(registry)]
        assert main(argv) == 0
        reports.append(json.loads(capsys.readouterr().out))
    from_run, from_registry = reports
    assert from_registry["source"] == "registered model det@1.0.0"
    assert from_registry["metrics"] == from_run["metrics"]
    assert from_registry["matrices"] == from_run["matrices"]
    # the fitted size is the registered one; the same settings are refused as for the run
    argv = ["evaluate", "det@1.0.0", str(category), "--registry", str(registry)]
    assert main([*argv, "--set", "input_size=64"]) == 2
    err = capsys.readouterr().err
    assert "input_size does not apply when evaluating a fitted anomaly_detection model" in err


def test_a_fitted_run_is_not_resumed_or_reused(
    fitted_run: tuple[Path, str], category: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, _ = fitted_run
    assert main(["train", "--resume", str(run)]) == 2
    assert "own fit, which is all or nothing and cannot be resumed" in capsys.readouterr().err
    assert main([*TRAIN, str(category), "--out", str(run)]) == 1
    err = capsys.readouterr().err
    assert "already holds a run; give another --out" in err
    assert "--resume" not in err
    evaluate = ["evaluate", str(run), str(category)]
    assert main([*evaluate, "--set", "limit_val_batches=1", "--set", "input_size=64"]) == 2
    err = capsys.readouterr().err
    assert "input_size, limit_val_batches do not apply when evaluating a fitted" in err
    assert "the settings that apply are accelerator, cache_dir, strict" in err


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("learning_rate=0.01", "learning_rate does not apply to anomaly_detection, which trains "
         "with its own fit (learning_rate: set model.student_lr and model.teacher_lr)"),
        ("epochs=3", "epochs: the detector trains for a number of steps"),
        ("optimizer.name=sgd", "optimizer: the detector's stages train with Adam"),
        ("batch_size=8", "batch_size: set model.batch_size"),
        ("mixup=0.2", "mixup does not apply"),
        ("devices=1", "devices: the fit runs in one process on one device"),
        ("num_workers=0", "num_workers does not apply"),
        ("model.seed=3", "model.seed is the run's setting seed: set seed at the top level"),
        ("model.validation_fraction=0.5", "set val_fraction at the top level"),
        ("model.student_stepz=3", "model.student_stepz: unknown option"),
        ("model.width=nan", "model.width:"),
    ],
)  # fmt: skip
def test_settings_the_fit_does_not_honour_are_refused(
    setting: str, named: str, category: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main([*TRAIN, str(category), "--out", str(out), "--set", setting]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert named in err
    assert not out.exists()


def test_refusals_in_a_config_file_and_the_api(
    category: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "train.json"
    config.write_text(json.dumps({"scheduler": "step", "precision": "bf16-mixed"}))
    argv = [*TRAIN, str(category), "--out", str(tmp_path / "run")]
    assert main([*argv, "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "precision, scheduler do not apply to anomaly_detection" in err
    assert "the settings that apply are accelerator, cache_dir, input_size, model, seed" in err
    both = ["--set", "accelerator=cpu", "--set", "model.device=cpu"]
    assert main([*argv, *both]) == 2
    assert "accelerator 'cpu' and model.device 'cpu' both choose the device" in (
        capsys.readouterr().err
    )
    if not torch.cuda.is_available():  # a device this machine lacks, before any data is read
        assert main([*argv, "--set", "accelerator=cuda"]) == 2
        assert "accelerator cuda needs a CUDA device, and torch sees none here" in (
            capsys.readouterr().err
        )
    from visionatlas_train import ConfigError, TrainConfig, train

    with pytest.raises(ConfigError, match="warmup_epochs does not apply"):
        train(TASK, ARCH, category, TrainConfig(warmup_epochs=1.0), out=tmp_path / "r")
    with pytest.raises(ConfigError, match="callbacks are Lightning callbacks"):
        train(TASK, ARCH, category, out=tmp_path / "r", callbacks=[object()])
    # catalog defaults (learning_rate, batch_size, ... of the architecture) are not "given"
    printed = [*TRAIN, str(category), "--print-config", "--set", "seed=4"]
    assert main(printed) == 0
    assert json.loads(capsys.readouterr().out)["seed"] == 4


def test_bad_data_is_one_line_naming_the_folder(
    tmp_path: Path, category: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere"
    assert main([*TRAIN, str(missing), "--out", str(tmp_path / "r1")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"dataset folder {missing} does not exist" in err
    (tmp_path / "flat").mkdir()
    assert main([*TRAIN, str(tmp_path / "flat"), "--out", str(tmp_path / "r2")]) == 1
    assert "has no train/good folder; expected the MVTec AD layout" in capsys.readouterr().err
    (tmp_path / "empty" / "train" / "good").mkdir(parents=True)
    assert main([*TRAIN, str(tmp_path / "empty"), "--out", str(tmp_path / "r3")]) == 1
    assert "holds no images" in capsys.readouterr().err
    assert main([*TRAIN, "builtin:strips", "--out", str(tmp_path / "r4")]) == 1
    assert "did you mean builtin:stripes?" in capsys.readouterr().err
    assert not any((tmp_path / f"r{i}").exists() for i in range(1, 5))


def test_quiet_prints_only_the_closing_line(
    category: Path, tiny_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [*TRAIN, str(category), "--out", str(tmp_path / "run"), "--config", str(tiny_config)]
    assert main([*argv, "--set", "model.student_steps=5", "-q", "--no-progress"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith("done: fitted in ")
    assert err[0].endswith(f"run in {tmp_path / 'run'}")


def test_evaluate_needs_test_images(
    fitted_run: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, _ = fitted_run
    normal_only = tmp_path / "normal"
    generate_dataset(normal_only, ["stripes"], sizes=SplitSizes(2, 1, 0, 0), image_size=32)
    assert main(["evaluate", str(run), str(normal_only / "stripes")]) == 1
    assert "has no test images" in capsys.readouterr().err


def test_python_api_on_a_builtin_category(tmp_path: Path) -> None:
    from visionatlas_train import evaluate, train

    cache = tmp_path / "cache"
    options = {"input_size": 32, "cache_dir": str(cache), "model": dict(TINY)}
    result = train(TASK, ARCH, "builtin:stripes", options, out=tmp_path / "run", verbose=False)
    assert (cache / "anomaly" / "stripes" / "test" / "hole").is_dir()
    detector = result.model
    assert isinstance(detector, UninformedStudents)
    assert detector.fitted
    assert result.metrics["threshold"] == detector.threshold
    assert result.best_checkpoint == result.run_dir / "model"
    assert result.summary["train_images"] == 40  # the builtin's train/good
    assert len(result.history) == TINY["student_steps"]
    report = evaluate(result.run_dir, "builtin:stripes", config={"cache_dir": str(cache)})
    assert report.num_images == 40
    assert report.metrics["image_auroc"] > 0.5  # better than chance, even this tiny
    with pytest.raises(va.VisionAtlasError, match="evaluate its run folder"):
        evaluate(detector, "builtin:stripes")


def test_prepare_data_holds_out_skips_and_refuses(tmp_path: Path, category: Path) -> None:
    training = AnomalyTraining()
    folder = tmp_path / "plain"
    generate_dataset(folder, ["grid"], sizes=SplitSizes(5, 0, 1, 1), image_size=32)
    root = folder / "grid"
    (root / "validation").rename(tmp_path / "no-validation")
    (root / "train" / "good" / "bad.png").write_bytes(b"not a png")
    request = DataRequest(input_size=(16, 16), val_fraction=0.4, seed=1)
    with pytest.warns(SkippedImageWarning, match=r"bad\.png"):
        data = training.prepare_data(str(root), request)
    assert (len(data.train), len(data.val)) == (3, 2)  # type: ignore[arg-type]
    assert [s.path.name for s in data.skipped] == ["bad.png"]
    assert data.train[0][0].shape == (3, 16, 16)  # type: ignore[index]
    with pytest.raises(ImageReadError, match=r"bad\.png"):
        training.prepare_data(str(root), DataRequest(strict=True))
    held = training.prepare_data(
        str(category), DataRequest(purpose="evaluate", input_size=(32, 32))
    )
    assert held.train is None
    images, _labels, masks = held.val[0]  # type: ignore[index]
    assert (images.shape, masks.shape) == ((3, 32, 32), (32, 32))
    assert held.num_outputs == 1


def test_the_task_registers_a_custom_fit() -> None:
    catalog = va.Catalog()
    assert TASK in catalog.list_trainable_tasks()
    training = catalog.load_training(TASK)
    assert isinstance(training, va.CustomFitTraining)
    assert not isinstance(training, va.TaskTraining)
    assert set(training.builtin_datasets) == {"stripes", "weave", "grid", "disc", "nut"}
    assert "learning_rate" not in training.fit_settings
    assert set(training.setting_hints).isdisjoint(training.fit_settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CheckFailed, match="trains with its own fit"):
            check_training(TASK, data="builtin:stripes")
