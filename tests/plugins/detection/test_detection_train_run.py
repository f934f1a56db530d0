"""A short real detection run through visionatlas-train on a synthetic COCO set."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from visionatlas.training.protocol import DataRequest
from visionatlas_detection.data import write_synthetic_coco
from visionatlas_detection.training import DetectionTraining

SETTINGS = {
    "epochs": 3,
    "batch_size": 4,
    "num_workers": 0,
    "augment": "none",
    "model": {"backbone": "resnet18", "min_size": 128, "max_size": 160},
}


def test_fcos_trains_and_evaluates_on_coco_folders(tmp_path: Path) -> None:
    from visionatlas_train import evaluate, train

    root = write_synthetic_coco(tmp_path / "shapes", train=8, val=4, seed=0)
    run = tmp_path / "run"
    result = train("object_detection", "fcos", root, SETTINGS, out=run, verbose=False)
    rows = list(csv.DictReader(io.StringIO((run / "metrics.csv").read_text())))
    assert float(rows[-1]["train/loss"]) < float(rows[0]["train/loss"])
    assert {"val/map", "val/map_50", "val/map_75", "val/map_small"} <= set(rows[0])
    assert not any(key.startswith("train/map") for key in rows[0])  # losses, not predictions
    assert result.labels == ["__background__", "rectangle", "ellipse", "triangle"]
    report = evaluate(run, root)
    assert report.num_images == 4
    assert report.metrics["map"] == pytest.approx(result.metrics["val/map"])


def test_detection_refuses_what_it_cannot_honour(tmp_path: Path) -> None:
    training = DetectionTraining()
    with pytest.raises(ValueError, match="mixup or cutmix"):
        training.batch_transform(mixup=0.2, cutmix=0.0, num_outputs=4)
    request = DataRequest()
    with pytest.raises(ValueError, match="is not detection data"):
        training.prepare_data(str(tmp_path), request)


def test_builtin_shapes_is_written_once_into_the_cache(tmp_path: Path) -> None:
    training = DetectionTraining()
    request = DataRequest(cache_dir=tmp_path)
    data = training.prepare_data("builtin:shapes", request)
    assert data.train is not None
    assert len(data.train) == 160
    assert data.val is not None
    assert len(data.val) == 40
    assert data.labels == ["__background__", "rectangle", "ellipse", "triangle"]
    written = next(tmp_path.glob("detection-shapes-*"))
    stamp = (written / "train" / "annotations.json").stat().st_mtime_ns
    training.prepare_data("builtin:shapes", request)
    assert (written / "train" / "annotations.json").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="unknown built-in dataset 'builtin:shape'"):
        training.prepare_data("builtin:shape", request)
