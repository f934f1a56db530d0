"""A short real detection run through visionatlas-train on a synthetic COCO set."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO

from visionatlas.training.protocol import DataRequest
from visionatlas_detection.data import DetectionDataset, read_coco, write_synthetic_coco
from visionatlas_detection.training import DetectionTraining

SETTINGS = {
    "epochs": 3,
    "batch_size": 4,
    "num_workers": 0,
    "augment": "none",
    "model": {"backbone": "resnet18", "min_size": 128, "max_size": 160},
}


def test_fcos_trains_and_evaluates_on_coco_folders(tmp_path: Path) -> None:
    from visionatlas_train import evaluate, predict, train

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

    out = tmp_path / "predicted"
    predict(run, [root / "val" / "images" / "00001.png", root / "val" / "images"], out,
            score_threshold=0.0)  # fmt: skip
    written = json.loads((out / "predictions.json").read_text())
    assert [c["name"] for c in written["categories"]] == ["rectangle", "ellipse", "triangle"]
    assert len(written["images"]) == 5  # one file named twice: two outputs, two names
    assert written["images"][0]["overlay"] == "overlays/00001.png"
    assert written["images"][2]["overlay"] == "overlays/00001-2.png"
    assert written["annotations"], "a score threshold of 0 keeps every detection"
    for annotation in written["annotations"]:
        assert annotation["category_id"] in (1, 2, 3)
        assert len(annotation["bbox"]) == 4
        assert 0.0 <= annotation["score"] <= 1.0
    listing = COCO(str(out / "predictions.json"))  # a COCO dataset of its own
    assert len(listing.loadRes(written["annotations"]).getAnnIds()) == len(written["annotations"])
    for entry in written["images"]:
        with Image.open(out / entry["overlay"]) as overlay, Image.open(entry["file_name"]) as image:
            assert overlay.size == image.size
    with pytest.raises(ValueError, match="not an empty folder"):
        predict(run, [root / "val" / "images"], out)  # nothing already written is replaced


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


def test_predict_command_writes_files_and_refuses_bad_paths(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = write_synthetic_coco(tmp_path / "shapes", train=4, val=2, seed=1)
    command = [sys.executable, "-m", "visionatlas", "predict", str(tmp_path / "no-run"),
               str(root / "val" / "images"), "--out", str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "no training run or checkpoint" in done.stderr or "neither" in done.stderr


def test_strong_augmentation_moves_boxes_and_masks_with_the_image(tmp_path: Path) -> None:
    from visionatlas_detection.augment import detection_augmentation

    root = write_synthetic_coco(tmp_path / "shapes", train=6, val=1, seed=2)
    records, names = read_coco(
        root / "train" / "annotations.json", root / "train" / "images", masks=True
    )
    labels = ["__background__", *names]
    transform = detection_augmentation("strong")
    dataset = DetectionDataset(records, labels, masks=True, transform=transform)
    torch.manual_seed(0)
    for index in range(len(dataset)):
        image, target = dataset[index]
        boxes, masks = target["boxes"], target["masks"]
        assert len(boxes) == len(masks) == len(target["labels"])
        height, width = image.shape[-2:]
        assert masks.shape[-2:] == (height, width)
        for box, mask in zip(boxes.tolist(), masks, strict=True):
            assert 0 <= box[0] < box[2] <= width
            assert 0 <= box[1] < box[3] <= height
            _, xs = torch.nonzero(mask, as_tuple=True)
            if len(xs):  # the mask lies within its box (a pixel of slack for rounding)
                assert xs.min() >= box[0] - 1
                assert xs.max() <= box[2] + 1
    with pytest.raises(ValueError, match="accepted: a preset"):
        detection_augmentation("flip,mosaic")
