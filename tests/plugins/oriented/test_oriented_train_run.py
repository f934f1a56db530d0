"""A short real oriented-detection run through visionatlas-train on a synthetic DOTA set."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from visionatlas.errors import DatasetError
from visionatlas.training.protocol import DataRequest
from visionatlas_oriented.data import write_synthetic_dota
from visionatlas_oriented.training import OrientedTraining

SETTINGS = {
    "epochs": 3,
    "batch_size": 4,
    "num_workers": 0,
    "augment": "none",
    "learning_rate": 0.001,
    "optimizer": {"name": "adamw"},
    "model": {"backbone": "resnet18", "min_size": 128, "max_size": 160, "fpn_channels": 64},
}


def test_rotated_fcos_trains_evaluates_and_predicts(tmp_path: Path) -> None:
    from visionatlas_train import evaluate, predict, train

    root = write_synthetic_dota(tmp_path / "shapes", train=8, val=4, seed=0)
    run = tmp_path / "run"
    result = train("oriented_object_detection", "rotated_fcos", root, SETTINGS, out=run,
                   verbose=False)  # fmt: skip
    rows = list(csv.DictReader(io.StringIO((run / "metrics.csv").read_text())))
    assert float(rows[-1]["train/loss"]) < float(rows[0]["train/loss"])
    assert {"val/map_50", "val/ap_50_bar", "val/ap_50_ellipse", "val/ap_50_arrow"} <= set(rows[0])
    assert result.labels == ["__background__", "bar", "ellipse", "arrow"]
    report = evaluate(run, root)
    assert report.num_images == 4
    assert report.metrics["map_50"] == pytest.approx(result.metrics["val/map_50"])

    out = tmp_path / "predicted"
    images = sorted((root / "val" / "images").iterdir())
    predict(run, images, out, score_threshold=0.0)
    written = json.loads((out / "predictions.json").read_text())
    assert written["classes"] == ["bar", "ellipse", "arrow"]
    assert len(written["images"]) == 4
    found = [d for entry in written["images"] for d in entry["detections"]]
    assert found, "a score threshold of 0 keeps every detection"
    for detection in found:
        assert detection["class"] in written["classes"]
        assert len(detection["box"]) == 5
        assert len(detection["polygon"]) == 8
    for entry, image in zip(written["images"], images, strict=True):
        lines = (out / "labelTxt" / f"{image.stem}.txt").read_text().splitlines()
        assert len(lines) == len(entry["detections"])
        assert all(len(line.split()) == 10 for line in lines)
        with Image.open(out / entry["overlay"]) as overlay, Image.open(image) as original:
            assert overlay.size == original.size


def test_oriented_training_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    training = OrientedTraining()
    with pytest.raises(ValueError, match="mixup or cutmix"):
        training.batch_transform(mixup=0.2, cutmix=0.0, num_outputs=4)
    with pytest.raises(DatasetError, match="is not oriented-detection data"):
        training.prepare_data(str(tmp_path), DataRequest())


def test_a_single_dota_folder_is_split(tmp_path: Path) -> None:
    root = write_synthetic_dota(tmp_path / "shapes", train=10, val=2, seed=1)
    data = OrientedTraining().prepare_data(str(root / "train"), DataRequest(val_fraction=0.2))
    assert data.train is not None
    assert data.val is not None
    assert (len(data.train), len(data.val)) == (8, 2)
    assert data.labels == ["__background__", "bar", "ellipse", "arrow"]
