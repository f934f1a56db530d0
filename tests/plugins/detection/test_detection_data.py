"""COCO and VOC readers on files the tests write, bad input, and the synthetic set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from visionatlas.errors import DatasetError
from visionatlas_detection.data import (
    DetectionDataset,
    read_coco,
    read_voc,
    write_synthetic_coco,
)


def _image(folder: Path, name: str, width: int = 40, height: int = 30) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (90, 120, 150)).save(folder / name)


def _rle(height: int, width: int, box: tuple[int, int, int, int]) -> dict[str, Any]:
    grid = np.zeros((height, width), dtype=np.uint8, order="F")
    x0, y0, x1, y1 = box
    grid[y0:y1, x0:x1] = 1
    rle = mask_utils.encode(grid)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _coco(tmp_path: Path, **changes: Any) -> tuple[Path, Path]:
    images = tmp_path / "images"
    for name in ("a.png", "b.png", "empty.png"):
        _image(images, name)
    data: dict[str, Any] = {
        "images": [
            {"id": 7, "file_name": "a.png", "width": 40, "height": 30},
            {"id": 9, "file_name": "b.png", "width": 40, "height": 30},
            {"id": 11, "file_name": "empty.png", "width": 40, "height": 30},
        ],
        "categories": [{"id": 17, "name": "cat"}, {"id": 3, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 17, "bbox": [2, 3, 10, 8], "iscrowd": 0,
             "segmentation": [[2, 3, 12, 3, 12, 11, 2, 11]]},
            {"id": 2, "image_id": 7, "category_id": 3, "bbox": [20, 10, 5, 5], "iscrowd": 0,
             "segmentation": _rle(30, 40, (20, 10, 25, 15))},
            {"id": 3, "image_id": 9, "category_id": 3, "bbox": [0, 0, 40, 30], "iscrowd": 1,
             "segmentation": _rle(30, 40, (0, 0, 40, 30))},
        ],
    }  # fmt: skip
    for key, value in changes.items():
        data[key] = value(data[key]) if callable(value) else value
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path, images


def test_coco_maps_category_ids_and_keeps_negatives_and_crowds(tmp_path: Path) -> None:
    path, images = _coco(tmp_path)
    records, labels = read_coco(path, images, masks=True)
    assert labels == ["dog", "cat"]  # category ids 3, 17 -> labels 1, 2
    assert [r.image_id for r in records] == [7, 9, 11]
    assert [a.label for a in records[0].annotations] == [2, 1]
    assert records[0].annotations[0].box == (2.0, 3.0, 12.0, 11.0)
    assert records[1].annotations[0].ignored  # the crowd
    assert records[2].annotations == ()  # a negative image stays

    dataset = DetectionDataset(records, labels, masks=True)
    image, target = dataset[0]
    assert image.shape == (3, 30, 40)
    assert image.dtype == torch.float32
    assert float(image.max()) <= 1.0
    assert target["labels"].tolist() == [2, 1]
    assert target["boxes"].tolist() == [[2.0, 3.0, 12.0, 11.0], [20.0, 10.0, 25.0, 15.0]]
    masks = target["masks"]
    assert masks.shape == (2, 30, 40)
    assert masks.dtype == torch.uint8
    assert int(masks[1].sum()) == 25  # the RLE square
    assert 70 <= int(masks[0].sum()) <= 99  # the 10x8 polygon, rasterised by pycocotools
    _, crowd_only = dataset[1]
    assert crowd_only["boxes"].shape == (0, 4)
    assert crowd_only["masks"].shape == (0, 30, 40)


def test_coco_labels_of_a_trained_model_map_by_name(tmp_path: Path) -> None:
    path, images = _coco(tmp_path)
    records, labels = read_coco(path, images, labels=["cat", "bird", "dog"])
    assert labels == ["cat", "bird", "dog"]
    assert [a.label for a in records[0].annotations] == [1, 3]
    with pytest.raises(DatasetError, match=r"categories \['dog'\] that the model does not know"):
        read_coco(path, images, labels=["cat"])


def _with_annotation(**fields: Any) -> Any:
    def change(annotations: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [*annotations, {"id": 42, "image_id": 9, "iscrowd": 0, **fields}]

    return change


@pytest.mark.parametrize(
    ("annotation", "masks", "message"),
    [
        ({"category_id": 17, "bbox": [30, 5, 20, 5]}, False,
         r"annotation id 42: bbox .* outside its 40x30 image"),
        ({"category_id": 17, "bbox": [3, 5, 0, 5]}, False, r"annotation id 42: bbox .* zero area"),
        ({"category_id": 5, "bbox": [3, 5, 4, 5]}, False,
         r"annotation id 42: category_id 5 is not in .* \[3, 17\]"),
        ({"category_id": 17, "bbox": [3, 5, 4, 5],
          "segmentation": _rle(20, 40, (0, 0, 4, 4))}, True,
         r"annotation id 42: the RLE mask is 20x40 .* but its image is 30x40"),
        ({"category_id": 17, "bbox": [3, 5, 4, 5], "segmentation": [[1, 2, 3]]}, True,
         r"annotation id 42: segmentation .* is not a mask"),
    ],
)  # fmt: skip
def test_coco_bad_annotations_are_refused_naming_file_and_id(
    tmp_path: Path, annotation: dict[str, Any], masks: bool, message: str
) -> None:
    path, images = _coco(tmp_path, annotations=_with_annotation(**annotation))
    with pytest.raises(DatasetError, match=message) as info:
        read_coco(path, images, masks=masks)
    assert str(path) in str(info.value)


def test_coco_images_missing_from_the_folder_are_named(tmp_path: Path) -> None:
    path, images = _coco(tmp_path)
    (images / "b.png").unlink()
    with pytest.raises(DatasetError, match=r"names images that .*images lacks: b\.png"):
        read_coco(path, images)


def test_not_a_coco_file(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(DatasetError, match=r"lacks \['annotations', 'categories'\]"):
        read_coco(path, tmp_path)


def _voc(root: Path, objects: str, name: str = "img1") -> None:
    _image(root / "JPEGImages", f"{name}.jpg", 50, 40)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "Annotations" / f"{name}.xml").write_text(
        f"<annotation><filename>{name}.jpg</filename><size><width>50</width>"
        f"<height>40</height><depth>3</depth></size>{objects}</annotation>"
    )


def _object(name: str, box: tuple[int, int, int, int], difficult: int = 0) -> str:
    x0, y0, x1, y1 = box
    return (
        f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{x0}</xmin>"
        f"<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
    )


def test_voc_reads_boxes_classes_and_difficult(tmp_path: Path) -> None:
    _voc(tmp_path, _object("person", (1, 1, 10, 20)) + _object("car", (5, 6, 50, 40), 1))
    _voc(tmp_path, "", name="img2")
    records, labels = read_voc(tmp_path)
    assert labels == ["car", "person"]
    first = records[0].annotations
    assert first[0].box == (0.0, 0.0, 10.0, 20.0)
    assert first[0].label == 2
    assert first[1].ignored
    assert first[1].label == 1
    assert records[1].annotations == ()
    image, target = DetectionDataset(records, labels)[0]
    assert image.shape == (3, 40, 50)
    assert target["boxes"].tolist() == [[0.0, 0.0, 10.0, 20.0]]


@pytest.mark.parametrize(
    ("box", "message"),
    [((5, 5, 60, 20), "outside its 50x40 image"), ((5, 5, 4, 20), "zero area")],
)
def test_voc_bad_boxes_are_refused(tmp_path: Path, box: tuple[int, ...], message: str) -> None:
    _voc(tmp_path, _object("person", box))  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match=rf"img1\.xml, object 0: .*{message}"):
        read_voc(tmp_path)


def test_synthetic_set_is_deterministic_and_readable(tmp_path: Path) -> None:
    first = write_synthetic_coco(tmp_path / "a", train=6, val=2, seed=3)
    second = write_synthetic_coco(tmp_path / "b", train=6, val=2, seed=3)
    for split in ("train", "val"):
        assert (first / split / "annotations.json").read_bytes() == (
            second / split / "annotations.json"
        ).read_bytes()
        for image in (first / split / "images").iterdir():
            assert image.read_bytes() == (second / split / "images" / image.name).read_bytes()
    records, labels = read_coco(first / "train" / "annotations.json", first / "train" / "images",
                                masks=True)  # fmt: skip
    assert labels == ["rectangle", "ellipse", "triangle"]
    assert all(128 <= r.width <= 256 and 128 <= r.height <= 256 for r in records)
    boxes = [a for r in records for a in r.annotations]
    assert len(boxes) >= 6
    assert {a.label for a in boxes} == {1, 2, 3}
    dataset = DetectionDataset(records, labels, masks=True)
    for index in range(len(dataset)):
        _, target = dataset[index]
        for box, mask in zip(target["boxes"], target["masks"], strict=True):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
