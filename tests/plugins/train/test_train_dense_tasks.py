"""Detection, instance and semantic segmentation through the engine: every architecture of
the catalog takes a training step with its catalog defaults, and the run options (frozen
backbone, trainable stages, two-phase fine-tuning, bf16, DDP) work for these models."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from visionatlas import get_catalog
from visionatlas.lifecycle.checkpoint import load_checkpoint
from visionatlas_detection.data import write_synthetic_coco
from visionatlas_segmentation.data import write_synthetic_masks

TASKS = ("object_detection", "instance_segmentation", "segmentation")
SMALL_DETECTOR = {"min_size": 64, "max_size": 96}


@pytest.fixture(scope="module")
def coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_coco(tmp_path_factory.mktemp("coco"), train=2, val=1, seed=0)


@pytest.fixture(scope="module")
def masks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_masks(tmp_path_factory.mktemp("masks"), train=2, val=1, seed=0)


def _rows(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((run / "metrics.csv").read_text())))


def _train(task: str, name: str, data: Path, out: Path, **settings: Any) -> Any:
    from visionatlas_train import train

    small = {
        "epochs": 1, "batch_size": 2, "num_workers": 0, "limit_train_batches": 1,
        "precise_bn_batches": 0, "augment": "none", "input_size": [64, 64],
    }  # fmt: skip
    model: dict[str, Any] = {}
    if task != "segmentation":  # SSDLite resizes to a min_size square: no max_size
        model = {"min_size": 64} if name.startswith("ssdlite") else dict(SMALL_DETECTOR)
    model.update(settings.pop("model", {}))
    return train(task, name, data, {**small, **settings, "model": model}, out=out, verbose=False)


def _architectures() -> list[tuple[str, str]]:
    catalog = get_catalog()
    return [(task, name) for task in TASKS for name in catalog.list_architectures(task)]


@pytest.mark.slow
@pytest.mark.parametrize(("task", "name"), _architectures())
def test_every_dense_architecture_trains_with_its_catalog_defaults(
    task: str, name: str, coco: Path, masks: Path, tmp_path: Path
) -> None:
    data = masks if task == "segmentation" else coco
    result = _train(task, name, data, tmp_path / "run")
    monitor = "val/miou" if task == "segmentation" else "val/map"
    assert any(key.startswith(monitor) or key.endswith("segm_map") for key in result.metrics)
    assert float(_rows(tmp_path / "run")[0]["train/loss"]) > 0


def _trainable_backbone(run: Path) -> tuple[int, int]:
    model = load_checkpoint(run / "checkpoints" / "last").model
    assert model is not None
    backbone = [p for n, p in model.named_parameters() if n.startswith("backbone")]
    return sum(p.requires_grad for p in backbone), len(backbone)


def test_frozen_backbone_and_trainable_stages_reach_detectors(coco: Path, tmp_path: Path) -> None:
    model = {"backbone": "resnet18"}
    _train("object_detection", "fcos", coco, tmp_path / "frozen", freeze_backbone=True,
           model=model)  # fmt: skip
    frozen, total = _trainable_backbone(tmp_path / "frozen")
    _train("object_detection", "fcos", coco, tmp_path / "two", model={
        **model, "trainable_backbone_layers": 2})  # fmt: skip
    two, _ = _trainable_backbone(tmp_path / "two")
    assert 0 < two < total
    assert frozen < two  # only the FPN stays trainable when the backbone is frozen


def test_two_phase_fine_tuning_and_bf16_reach_segmentation(masks: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    _train("segmentation", "deeplabv3", masks, run, epochs=2, probe_epochs=1,
           precision="bf16-mixed", model={"backbone": "resnet18"})  # fmt: skip
    rows = _rows(run)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    trainable, total = _trainable_backbone(run)
    assert trainable == total  # the backbone was unfrozen after the probe epoch


@pytest.mark.slow
def test_a_detector_trains_with_ddp_on_two_cpu_processes(coco: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    command = [
        sys.executable, "-m", "visionatlas", "train", "object_detection", "fcos", str(coco),
        "--out", str(run), "--no-progress", "--set", "model.backbone=\"resnet18\"",
        "--set", "model.min_size=64", "--set", "model.max_size=96", "--set", "epochs=1",
        "--set", "batch_size=1", "--set", "num_workers=0", "--set", "accelerator=\"cpu\"",
        "--set", "devices=2", "--set", "strategy=\"ddp\"", "--set", "precise_bn_batches=0",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("epoch 1/1") == 1  # rank 0 alone reports and writes
    assert "val/map" in _rows(run)[0]
