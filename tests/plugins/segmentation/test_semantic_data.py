"""Mask-folder readers (plain, VOC, Cityscapes) on files the tests write, bad input,
augmentation that moves masks with images, and the synthetic set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionatlas.errors import DatasetError
from visionatlas.training.protocol import DataRequest
from visionatlas_segmentation.data import (
    CITYSCAPES_CLASSES,
    VOC_CLASS_NAMES,
    SegmentationDataset,
    read_mask_folders,
    write_synthetic_masks,
)
from visionatlas_segmentation.semantic_training import SemanticSegmentationTraining


def _pair(
    images: Path,
    masks: Path,
    stem: str,
    *,
    size: tuple[int, int] = (40, 30),
    mode: str = "P",
    value: int = 1,
    suffix: str = ".png",
    mask_name: str | None = None,
) -> None:
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 150)).save(images / f"{stem}{suffix}")
    grid = np.zeros((size[1], size[0]), dtype=np.uint8)
    grid[5:15, 10:30] = value
    grid[0, :] = 255
    mask = Image.fromarray(grid, mode="L")
    if mode == "P":
        mask = mask.convert("P")
    elif mode == "RGB":
        mask = mask.convert("RGB")
    mask.save(masks / (mask_name or f"{stem}.png"))


def _plain(root: Path, classes: str = "background\nthing\n") -> Path:
    for split, stems in (("train", ("a", "b", "c")), ("val", ("d",))):
        for stem in stems:
            _pair(root / split / "images", root / split / "masks", stem)
    (root / "classes.txt").write_text(classes, encoding="utf-8")
    return root


def test_plain_mask_folders_give_pairs_and_classes(tmp_path: Path) -> None:
    train, val, names = read_mask_folders(_plain(tmp_path))
    assert names == ["background", "thing"]
    assert [p.image.name for p in train] == ["a.png", "b.png", "c.png"]
    assert val is not None
    assert [p.mask.name for p in val] == ["d.png"]
    image, mask = SegmentationDataset(train, 2, (24, 32))[0]
    assert image.shape == (3, 24, 32)
    assert image.dtype == torch.float32
    assert mask.dtype == torch.int64
    assert set(mask.unique().tolist()) <= {0, 1, 255}
    assert (mask == 255).any()  # the ignored border survives resizing (nearest neighbour)


def test_voc_layout_uses_the_split_lists_and_voc_classes(tmp_path: Path) -> None:
    for stem in ("2007_000001", "2007_000002", "2007_000003"):
        _pair(tmp_path / "JPEGImages", tmp_path / "SegmentationClass", stem, suffix=".jpg")
    lists = tmp_path / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("2007_000001\n2007_000002\n")
    (lists / "val.txt").write_text("2007_000003\n")
    train, val, names = read_mask_folders(tmp_path)
    assert names == list(VOC_CLASS_NAMES)
    assert len(train) == 2
    assert val is not None
    assert val[0].image.name == "2007_000003.jpg"


def test_cityscapes_layout_pairs_train_ids(tmp_path: Path) -> None:
    for split in ("train", "val"):
        _pair(
            tmp_path / "leftImg8bit" / split / "aachen",
            tmp_path / "gtFine" / split / "aachen",
            "aachen_000000_000019_leftImg8bit",
            mask_name="aachen_000000_000019_gtFine_labelTrainIds.png",
            mode="L",
        )
    train, val, names = read_mask_folders(tmp_path)
    assert names == list(CITYSCAPES_CLASSES)
    assert train[0].mask.name.endswith("_gtFine_labelTrainIds.png")
    assert val is not None
    assert len(val) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("size", r"is 20x30 but its image .* is 40x30"),
        ("rgb", r"is a RGB image; masks are palette \(P\) or greyscale"),
        ("missing", r"has no mask: expected .*c\.png"),
        ("classes", r"no classes\.txt"),
    ],
)
def test_bad_folders_are_refused_naming_the_file(tmp_path: Path, change: str, message: str) -> None:
    root = _plain(tmp_path)
    masks = root / "train" / "masks"
    if change == "size":
        Image.new("L", (20, 30)).save(masks / "b.png")
    elif change == "rgb":
        Image.new("RGB", (40, 30)).save(masks / "b.png")
    elif change == "missing":
        (masks / "c.png").unlink()
    else:
        (root / "classes.txt").unlink()
    with pytest.raises(DatasetError, match=message):
        read_mask_folders(root)


def test_mask_values_outside_the_classes_are_refused_on_load(tmp_path: Path) -> None:
    root = _plain(tmp_path)
    _pair(root / "train" / "images", root / "train" / "masks", "b", value=7)
    train, _, _ = read_mask_folders(root)
    dataset = SegmentationDataset(train, 2, (24, 32))
    with pytest.raises(DatasetError, match=r"b\.png holds mask values \[7\].*accepted are 0-1"):
        dataset[1]


def test_a_model_trained_on_other_classes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="trained on"):
        read_mask_folders(_plain(tmp_path), labels=["background", "other"])


def test_augmentation_moves_the_mask_with_the_image(tmp_path: Path) -> None:
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    grid = np.zeros((48, 64), dtype=np.uint8)
    grid[8:30, 5:25] = 1
    picture = np.zeros((48, 64, 3), dtype=np.uint8)
    picture[grid == 1] = (255, 0, 0)
    Image.fromarray(picture).save(images / "x.png")
    Image.fromarray(grid, mode="L").save(masks / "x.png")
    (tmp_path / "classes.txt").write_text("background\nred\n")
    train, _, _ = read_mask_folders(tmp_path)
    dataset = SegmentationDataset(train, 2, (32, 32), train=True, augment="scale_jitter,crop,flip")
    torch.manual_seed(0)
    moved = 0
    for _ in range(12):
        image, mask = dataset[0]
        red = image[0] > 1.0  # normalized red channel of the red square
        inside = mask == 1
        assert (red == inside)[mask != 255].float().mean() > 0.9  # edges blur
        moved += int(inside.any())
    assert moved > 0


def test_unknown_augmentation_steps_list_what_is_accepted(tmp_path: Path) -> None:
    train, _, _ = read_mask_folders(_plain(tmp_path))
    with pytest.raises(ValueError, match=r"unknown steps \['rotate'\].*scale_jitter"):
        SegmentationDataset(train, 2, (32, 32), train=True, augment="flip,rotate")


def test_synthetic_set_is_deterministic_and_readable(tmp_path: Path) -> None:
    first = write_synthetic_masks(tmp_path / "a", train=4, val=2, seed=3)
    second = write_synthetic_masks(tmp_path / "b", train=4, val=2, seed=3)
    for name in ("train/images/00001.png", "train/masks/00002.png", "val/masks/00001.png"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    train, val, names = read_mask_folders(first)
    assert names == ["background", "rectangle", "ellipse", "triangle"]
    assert val is not None
    values = set()
    for pair in train:
        with Image.open(pair.mask) as mask:
            assert mask.mode == "P"
            values |= set(np.unique(np.asarray(mask)).tolist())
            with Image.open(pair.image) as image:
                assert min(image.size) >= 128
                assert max(image.size) <= 256
    assert 255 in values  # borders are ignored
    assert values - {255} <= {0, 1, 2, 3}


def test_builtin_shapes_and_the_evaluation_split(tmp_path: Path) -> None:
    training = SemanticSegmentationTraining()
    data = training.prepare_data(
        "builtin:shapes", DataRequest(cache_dir=tmp_path, input_size=(64, 64))
    )
    assert data.train is not None
    assert data.val is not None
    assert (len(data.train), len(data.val)) == (480, 40)
    assert data.labels == ["background", "rectangle", "ellipse", "triangle"]
    image, mask = data.train[0]
    assert image.shape == (3, 64, 64)
    assert mask.shape == (64, 64)
    evaluation = training.prepare_data(
        "builtin:shapes",
        DataRequest(purpose="evaluate", cache_dir=tmp_path, labels=tuple(data.labels)),
    )
    assert evaluation.train is None
    assert evaluation.val is not None
    assert len(evaluation.val) == 40
