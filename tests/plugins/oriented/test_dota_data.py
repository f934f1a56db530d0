"""The DOTA reader on files the tests write, bad input, the synthetic set, the dataset and
the augmentation."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from visionatlas.errors import DatasetError
from visionatlas_oriented.augment import (
    flip_horizontal,
    flip_vertical,
    oriented_augmentation,
    rotate90,
)
from visionatlas_oriented.boxes import boxes_to_corners
from visionatlas_oriented.data import (
    POINT_SLACK,
    OrientedDataset,
    read_dota,
    write_synthetic_dota,
)
from visionatlas_oriented.data.dota import LINE_FORMAT

BACKGROUND = "__background__"
PLANE = "10 5 30 5 30 15 10 15 plane"  # a 20 x 10 rectangle at (20, 10)


def _image(folder: Path, name: str, width: int = 40, height: int = 30) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (90, 120, 150)).save(folder / name)
    return folder / name


def _labels(root: Path, stem: str, text: str) -> Path:
    (root / "labelTxt").mkdir(parents=True, exist_ok=True)
    path = root / "labelTxt" / f"{stem}.txt"
    path.write_text(text)
    return path


def _dota(root: Path, text: str) -> Path:
    """``root/images/a.png`` (40 x 30) labelled by ``text``; returns the label file."""
    _image(root / "images", "a.png")
    return _labels(root, "a", text)


def _same_points(a: np.ndarray, b: np.ndarray, tol: float = 1e-4) -> bool:
    """Two ``(4, 2)`` corner sets hold the same points (in any order)."""
    distances = np.linalg.norm(a[:, None] - b[None], axis=-1)
    return bool((distances.min(axis=1) < tol).all() and (distances.min(axis=0) < tol).all())


def _le90(boxes: torch.Tensor) -> bool:
    w, h, angle = boxes[:, 2], boxes[:, 3], boxes[:, 4]
    return bool((w >= h).all() and (angle >= -math.pi / 2).all() and (angle < math.pi / 2).all())


def test_reads_headers_difficulty_negatives_and_classes_file(tmp_path: Path) -> None:
    _dota(tmp_path, "imagesource:GoogleEarth\ngsd:0.146\n\n"
                    f"{PLANE} 0\n26 18 34 26 31 29 23 21 small-vehicle 1\n{PLANE}\n")  # fmt: skip
    _image(tmp_path / "images", "b.jpg")  # no label file: a negative
    _image(tmp_path / "images", "c.png", 50, 20)
    _labels(tmp_path, "c", "imagesource:GoogleEarth\ngsd:null\n")  # headers only: a negative
    (tmp_path / "classes.txt").write_text("small-vehicle\nplane\nship\n\n")
    records, names = read_dota(tmp_path)
    assert names == ["small-vehicle", "plane", "ship"]  # classes.txt's order
    assert [r.image.name for r in records] == ["a.png", "b.jpg", "c.png"]
    first = records[0]
    assert (first.width, first.height) == (40, 30)
    assert first.classes == ("plane", "small-vehicle", "plane")
    assert first.difficult.tolist() == [False, True, False]  # left out: 0
    assert first.corners.shape == (3, 4, 2)
    assert first.corners.dtype == np.float32
    assert first.corners[1].tolist() == [[26, 18], [34, 26], [31, 29], [23, 21]]
    assert records[1].corners.shape == (0, 4, 2)
    assert (records[2].width, records[2].height, records[2].classes) == (50, 20, ())

    dataset = OrientedDataset(records, [BACKGROUND, *names])
    image, target = dataset[0]
    assert image.shape == (3, 30, 40)
    assert image.dtype == torch.float32
    assert 0.0 <= float(image.min()) <= float(image.max()) <= 1.0
    assert target["labels"].tolist() == [2, 1, 2]
    assert target["difficult"].tolist() == [False, True, False]
    assert target["image_id"] == 0
    boxes = target["boxes"]
    assert boxes.dtype == torch.float32
    assert boxes.shape == (3, 5)
    assert boxes[0].tolist() == pytest.approx([20.0, 10.0, 20.0, 10.0, 0.0], abs=1e-5)
    assert _le90(boxes)
    assert torch.equal(target["polygons"], torch.tensor(first.corners))
    for box, polygon in zip(boxes_to_corners(boxes), target["polygons"], strict=True):
        assert _same_points(box.numpy(), polygon.numpy(), tol=1e-3)  # rectangles here
    _, negative = dataset[1]
    assert negative["boxes"].shape == (0, 5)
    assert negative["labels"].shape == (0,)
    assert negative["polygons"].shape == (0, 4, 2)


def test_class_names_found_sorted_or_the_models(tmp_path: Path) -> None:
    _dota(tmp_path, f"{PLANE}\n10 5 30 5 30 15 10 15 harbor\n")
    assert read_dota(tmp_path)[1] == ["harbor", "plane"]
    records, names = read_dota(tmp_path, labels=[BACKGROUND, "plane", "ship", "harbor"])
    assert names == ["plane", "ship", "harbor"]  # the leading background is dropped
    _, target = OrientedDataset(records, [BACKGROUND, *names])[0]
    assert target["labels"].tolist() == [1, 3]
    with pytest.raises(ValueError, match="must start with '__background__'"):
        OrientedDataset(records, names)
    with pytest.raises(DatasetError, match=r"a\.png has classes \['harbor'\] that are not"):
        OrientedDataset(records, [BACKGROUND, "plane"])


def test_a_split_folder_reads_the_classes_file_of_its_parent(tmp_path: Path) -> None:
    _dota(tmp_path / "train", f"{PLANE}\n")
    (tmp_path / "classes.txt").write_text("ship\nplane\n")
    assert read_dota(tmp_path / "train")[1] == ["ship", "plane"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("10 5 30 5 30 15 10 plane", r"'10 5 30 5 30 15 10 plane' is not an object line"),
        ("a b c d e f g h plane", r"'a b c d e f g h plane' is not an object line"),
        (f"{PLANE} 0 extra", r"is not an object line"),
        ("10 5 30 5 30 15 plane", r"a polygon of 3 points \(6 numbers\)"),
        ("10 5 30 5 30 15 20 20 10 15 plane 1", r"a polygon of 5 points \(10 numbers\)"),
        (f"{PLANE} 2", r"difficult is '2'; it must be 0 or 1"),
        (f"{PLANE} difficult", r"difficult is 'difficult'; it must be 0 or 1"),
    ],
)
def test_malformed_lines_name_file_line_and_format(tmp_path: Path, line: str, message: str) -> None:
    path = _dota(tmp_path, f"imagesource:GoogleEarth\n{PLANE}\n{line}\n")
    with pytest.raises(DatasetError, match=rf"{message}") as info:
        read_dota(tmp_path)
    text = str(info.value)
    assert f"{path}, line 3:" in text
    assert LINE_FORMAT in text or "it must be 0 or 1" in text


@pytest.mark.parametrize(
    "line",
    [
        "10 5 30 15 30 5 10 15 plane",  # a bow tie: sides cross
        "10 5 20 5 30 5 15 5 plane",  # all on one line: no area
        "10 5 10 5 10 5 10 5 plane",  # one point four times
        "nan 5 30 5 30 15 10 15 plane",
        "10 5 inf 5 30 15 10 15 plane",
    ],
)
def test_unusable_polygons_are_refused(tmp_path: Path, line: str) -> None:
    path = _dota(tmp_path, f"{PLANE}\n\n{line}\n")
    with pytest.raises(DatasetError, match=r"is unusable: .*accepted are 4 corners") as info:
        read_dota(tmp_path)
    assert f"{path}, line 3:" in str(info.value)


def test_unknown_class_names_are_refused(tmp_path: Path) -> None:
    path = _dota(tmp_path, f"{PLANE}\n10 5 30 5 30 15 10 15 boat 0\n")
    (tmp_path / "classes.txt").write_text("plane\nship\n")
    pattern = (
        rf"{re.escape(str(path))}, line 2: class 'boat' is not one of the classes of .*: plane"
    )
    with pytest.raises(DatasetError, match=pattern):
        read_dota(tmp_path)
    with pytest.raises(DatasetError, match=r"line 2: class 'boat' is not one of the model's"):
        read_dota(tmp_path, labels=["plane"])
    (tmp_path / "classes.txt").write_text("plane\nship\nplane\n")
    with pytest.raises(DatasetError, match=r"each once .*repeated: \['plane'\]"):
        read_dota(tmp_path)


def test_corners_a_little_outside_are_kept_far_outside_refused(tmp_path: Path) -> None:
    slack = POINT_SLACK
    path = _dota(tmp_path, f"{-slack} 5 {40 + slack} 5 {40 + slack} 15 {-slack} 15 plane\n")
    records, _ = read_dota(tmp_path)
    assert records[0].corners[0, :, 0].tolist() == [-slack, 40 + slack, 40 + slack, -slack]
    path.write_text(f"{PLANE}\n10 5 30 5 30 {30 + slack + 0.5} 10 15 plane\n")
    with pytest.raises(
        DatasetError, match=r"line 2: the polygon .* outside its 40x30 image"
    ) as info:
        read_dota(tmp_path)
    assert str(path) in str(info.value)
    assert f"at most {slack:g} px past its edges" in str(info.value)


def test_label_files_without_an_image_are_refused(tmp_path: Path) -> None:
    _dota(tmp_path, f"{PLANE}\n")
    _labels(tmp_path, "ghost", f"{PLANE}\n")
    with pytest.raises(DatasetError, match=r"labelTxt has label files whose image .* lacks: "
                                           r"ghost\.txt .*images/<stem>"):  # fmt: skip
        read_dota(tmp_path)


def test_not_a_dota_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"is not a DOTA folder: it needs images/"):
        read_dota(tmp_path)


def test_synthetic_set_is_deterministic_and_readable(tmp_path: Path) -> None:
    first = write_synthetic_dota(tmp_path / "a", train=16, val=2, seed=3)
    second = write_synthetic_dota(tmp_path / "b", train=16, val=2, seed=3)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert len(files) == 2 * (16 + 2) + 1
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes()
    other = write_synthetic_dota(tmp_path / "c", train=1, val=0, seed=4)
    assert (other / "train/images/00000.png").read_bytes() != (
        first / "train/images/00000.png"
    ).read_bytes()

    records, names = read_dota(first / "train")
    assert names == ["bar", "ellipse", "arrow"]  # the set's classes.txt, in its parent
    assert all(128 <= r.width <= 256 and 128 <= r.height <= 256 for r in records)
    dataset = OrientedDataset(records, [BACKGROUND, *names])
    boxes, labels, touching = [], [], 0
    for index in range(len(dataset)):
        image, target = dataset[index]
        height, width = image.shape[-2:]
        corners = boxes_to_corners(target["boxes"])
        assert (corners >= -1e-3).all()
        assert (corners[..., 0] <= width + 1e-3).all()
        assert (corners[..., 1] <= height + 1e-3).all()
        boxes.append(target["boxes"])
        labels.append(target["labels"])
        touching += _touching_pairs(target["boxes"])
    every = torch.cat(boxes)
    assert len(every) >= 40
    assert _le90(every)
    assert set(torch.cat(labels).tolist()) == {1, 2, 3}
    assert int((every[:, 3] < 16).sum()) >= 5  # small objects
    assert int((every[:, 2] > 60).sum()) >= 5  # and large ones
    assert float((every[:, 2] / every[:, 3]).median()) > 2  # elongated
    angles = every[:, 4]
    assert float(angles.min()) < -1.0  # all angles
    assert float(angles.max()) > 1.0
    assert touching >= 1


def _touching_pairs(boxes: torch.Tensor) -> int:
    """Pairs of parallel boxes side by side: across their direction, their centres are
    about half the sum of their heights apart."""
    count = 0
    for i in range(len(boxes)):
        for j in range(i):
            a, b = boxes[i].tolist(), boxes[j].tolist()
            turn = abs(a[4] - b[4]) % math.pi
            across = abs((b[1] - a[1]) * math.cos(a[4]) - (b[0] - a[0]) * math.sin(a[4]))
            gap = across - (a[3] + b[3]) / 2
            along = abs((b[0] - a[0]) * math.cos(a[4]) + (b[1] - a[1]) * math.sin(a[4]))
            parallel = min(turn, math.pi - turn) < 0.1
            count += parallel and -1.5 < gap < 2.5 and along < (a[2] + b[2]) / 2
    return count


def _marked_sample() -> tuple[torch.Tensor, dict[str, Any]]:
    """A 30 x 40 image, dark but for pixel (row 7, column 12), and two boxes with their
    polygons; the first box is centred on that pixel's centre (12.5, 7.5)."""
    image = torch.zeros(3, 30, 40)
    image[:, 7, 12] = 1.0
    boxes = torch.tensor([[12.5, 7.5, 10.0, 4.0, 0.3], [30.0, 20.0, 12.0, 6.0, -1.2]])
    target = {
        "boxes": boxes,
        "polygons": boxes_to_corners(boxes),
        "labels": torch.tensor([1, 2]),
        "difficult": torch.tensor([False, True]),
        "image_id": 4,
    }
    return image, target


def _check_moved(image: torch.Tensor, target: dict[str, Any]) -> None:
    assert _le90(target["boxes"])
    for box, polygon in zip(boxes_to_corners(target["boxes"]), target["polygons"], strict=True):
        assert _same_points(box.numpy(), polygon.numpy())
    row, column = (int(v) for v in torch.nonzero(image[0])[0])
    assert target["boxes"][0, :2].tolist() == pytest.approx([column + 0.5, row + 0.5])
    assert target["labels"].tolist() == [1, 2]
    assert target["image_id"] == 4


@pytest.mark.parametrize(
    ("move", "size"),
    [
        (flip_horizontal, (30, 40)),
        (flip_vertical, (30, 40)),
        (lambda i, t: rotate90(i, t, 1), (40, 30)),
        (lambda i, t: rotate90(i, t, 2), (30, 40)),
        (lambda i, t: rotate90(i, t, 3), (40, 30)),
    ],
)
def test_flips_and_quarter_turns_move_boxes_exactly(move: Any, size: tuple[int, int]) -> None:
    image, target = move(*_marked_sample())
    assert tuple(image.shape[-2:]) == size
    _check_moved(image, target)


def test_quarter_turn_values() -> None:
    image, target = _marked_sample()
    _, turned = rotate90(image, target, 1)  # (x, y) -> (y, W - x), angle - pi/2
    assert turned["boxes"][0].tolist() == pytest.approx([7.5, 40 - 12.5, 10.0, 4.0,
                                                         0.3 - math.pi / 2])  # fmt: skip
    _, mirrored = flip_horizontal(image, target)
    assert mirrored["boxes"][0].tolist() == pytest.approx([40 - 12.5, 7.5, 10.0, 4.0, -0.3])
    _, back = rotate90(*rotate90(image, target, 3), 1)
    assert torch.allclose(back["boxes"], target["boxes"], atol=1e-5)


def test_augmentation_presets() -> None:
    assert oriented_augmentation("none") is None
    transform = oriented_augmentation("default")
    assert transform is not None
    torch.manual_seed(0)
    sizes = set()
    for _ in range(12):
        image, target = transform(*_marked_sample())
        sizes.add(tuple(image.shape[-2:]))
        assert _le90(target["boxes"])
        for box, polygon in zip(boxes_to_corners(target["boxes"]), target["polygons"],
                                strict=True):  # fmt: skip
            assert _same_points(box.numpy(), polygon.numpy())
    assert sizes == {(30, 40), (40, 30)}
    flips = oriented_augmentation("flip,colour")
    assert flips is not None
    for _ in range(6):
        image, target = flips(*_marked_sample())
        assert tuple(image.shape[-2:]) == (30, 40)
        _check_moved((image > 0.5).float(), target)  # the jitter keeps the mark bright
    with pytest.raises(ValueError, match=r"unknown steps \['spin'\].*rotate90"):
        oriented_augmentation("flip,spin")
