"""Short real runs through visionatlas-train: deeplabv3 on mask folders, Mask R-CNN on
COCO with masks; then evaluation and prediction files."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionatlas_detection.data import write_synthetic_coco
from visionatlas_segmentation.data import write_synthetic_masks


def _rows(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((run / "metrics.csv").read_text())))


def test_deeplabv3_trains_evaluates_and_predicts_masks(tmp_path: Path) -> None:
    from visionatlas_train import evaluate, predict, train

    root = write_synthetic_masks(tmp_path / "shapes", train=8, val=4, seed=0)
    run = tmp_path / "run"
    settings = {
        "epochs": 3,
        "batch_size": 4,
        "num_workers": 0,
        "input_size": [64, 64],
        "learning_rate": 0.01,
        "model": {"backbone": "resnet18"},
    }
    result = train("segmentation", "deeplabv3", root, settings, out=run, verbose=False)
    rows = _rows(run)
    assert float(rows[-1]["train/loss"]) < float(rows[0]["train/loss"])
    assert {"val/miou", "val/pixel_acc", "val/iou_background", "val/iou_triangle"} <= set(rows[0])
    assert 0.0 < result.metrics["val/pixel_acc"] <= 1.0
    report = evaluate(run, root)
    assert report.num_images == 4
    assert report.metrics["miou"] == pytest.approx(result.metrics["val/miou"])

    out = tmp_path / "predicted"
    written = predict(run, [root / "val" / "images"], out)
    assert written.summary["images"] == 4
    listing = json.loads((out / "predictions.json").read_text())
    assert listing["classes"] == ["background", "rectangle", "ellipse", "triangle"]
    for entry in listing["images"]:
        with Image.open(entry["file_name"]) as image:
            size = image.size
        with Image.open(out / entry["mask"]) as mask:
            assert mask.size == size  # masks at the image's own size
            assert mask.mode == "P"
            assert set(np.unique(np.asarray(mask)).tolist()) <= {0, 1, 2, 3}
        with Image.open(out / entry["overlay"]) as overlay:
            assert overlay.size == size
        assert sum(entry["fractions"].values()) == pytest.approx(1.0)


@pytest.mark.slow
def test_mask_rcnn_trains_on_coco_masks(tmp_path: Path) -> None:
    from pycocotools import mask as mask_utils

    from visionatlas_train import predict, train

    root = write_synthetic_coco(tmp_path / "shapes", train=4, val=2, seed=0)
    run = tmp_path / "run"
    settings = {
        "epochs": 3,
        "batch_size": 2,
        "learning_rate": 0.002,
        "num_workers": 0,
        "augment": "strong",
        "precise_bn_batches": 0,
        "model": {"backbone": "resnet18", "min_size": 96, "max_size": 128},
    }
    result = train("instance_segmentation", "maskrcnn", root, settings, out=run, verbose=False)
    rows = _rows(run)
    assert {"val/segm_map", "val/segm_map_50", "val/bbox_map", "val/segm_map_small"} <= set(rows[0])
    assert float(rows[-1]["train/loss"]) < float(rows[0]["train/loss"])
    assert result.labels == ["__background__", "rectangle", "ellipse", "triangle"]

    out = tmp_path / "predicted"
    predict(run, [root / "val" / "images"], out, score_threshold=0.0)
    written = json.loads((out / "predictions.json").read_text())
    assert written["annotations"], "a score threshold of 0 keeps every detection"
    sizes = {entry["id"]: (entry["height"], entry["width"]) for entry in written["images"]}
    for annotation in written["annotations"]:  # RLE masks at the image's size
        rle = annotation["segmentation"]
        assert tuple(rle["size"]) == sizes[annotation["image_id"]]
        assert mask_utils.area(rle) == pytest.approx(annotation["area"])
