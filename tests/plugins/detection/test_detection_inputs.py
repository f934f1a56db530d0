"""Bad images and targets are refused with messages that say where and what is accepted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

import visionatlas as va
from visionatlas_detection.inputs import DetectionInputError, validate_targets

Batch = tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    """One small detector for the whole module (the checks run before any computation)."""
    return va.Catalog().create_model(
        "object_detection",
        "fcos",
        {"backbone": "mobilenet_v3_small", "min_size": 64, "max_size": 64},
        num_classes=4,
    )


def _edit(targets: list[dict[str, Any]], index: int, **changes: Any) -> list[dict[str, Any]]:
    edited = [dict(t) for t in targets]
    edited[index].update(changes)
    return edited


BAD_TARGETS: list[tuple[str, Callable[[list[dict[str, Any]]], Any], list[str]]] = [
    (
        "reversed x",
        lambda t: _edit(t, 1, boxes=torch.tensor([[50.0, 8.0, 5.0, 100.0]])),
        ["targets[1]['boxes'][0]", "[50.0, 8.0, 5.0, 100.0]", "x2 <= x1", "x1 < x2"],
    ),
    (
        "degenerate y",
        lambda t: _edit(t, 0, boxes=torch.tensor([[10.0, 12.0, 60.0, 70.0], [7.0, 5, 20, 5]])),
        ["targets[0]['boxes'][1]", "y2 <= y1"],
    ),
    (
        "not finite",
        lambda t: _edit(t, 1, boxes=torch.tensor([[5.0, float("nan"), 50.0, 100.0]])),
        ["targets[1]['boxes'][0]", "not finite"],
    ),
    (
        "label zero",
        lambda t: _edit(t, 1, labels=torch.tensor([0])),
        ["targets[1]['labels'][0] is 0", "[1, 3]", "background"],
    ),
    (
        "label too large",
        lambda t: _edit(t, 0, labels=torch.tensor([1, 4])),
        ["targets[0]['labels'][1] is 4", "[1, 3]", "num_classes=4"],
    ),
    (
        "boxes shape",
        lambda t: _edit(t, 0, boxes=torch.zeros(2, 5)),
        ["targets[0]['boxes'] has shape (2, 5)", "(K, 4)"],
    ),
    (
        "integer boxes",
        lambda t: _edit(t, 1, boxes=torch.tensor([[5, 8, 50, 100]])),
        ["targets[1]['boxes']", "torch.int64", "float"],
    ),
    (
        "int32 labels",
        lambda t: _edit(t, 1, labels=torch.tensor([3], dtype=torch.int32)),
        ["targets[1]['labels']", "torch.int32", "int64"],
    ),
    (
        "count mismatch",
        lambda t: _edit(t, 1, labels=torch.tensor([3, 1])),
        ["targets[1] has 1 boxes but 2 labels"],
    ),
    (
        "missing labels",
        lambda t: [t[0], {"boxes": t[1]["boxes"]}],
        ["targets[1] has no 'labels'"],
    ),
    ("one target short", lambda t: t[:1], ["2 images but 1 targets"]),
    ("not a list", lambda t: t[0], ["one dict per image", "dict"]),
    (
        "boxes as a list",
        lambda t: _edit(t, 0, boxes=[[1, 2, 3, 4]]),
        ["targets[0]['boxes'] is a list"],
    ),
]


@pytest.mark.parametrize(
    ("case", "corrupt", "expected"), BAD_TARGETS, ids=[case for case, _, _ in BAD_TARGETS]
)
def test_bad_targets_are_refused(
    model: torch.nn.Module,
    make_batch: Callable[..., Batch],
    case: str,
    corrupt: Callable[[list[dict[str, Any]]], Any],
    expected: list[str],
) -> None:
    images, targets = make_batch()
    model.train()
    with pytest.raises(DetectionInputError) as info:
        model(images, corrupt(targets))
    message = str(info.value)
    for part in expected:
        assert part in message, (part, message)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, va.VisionAtlasError)


BAD_IMAGES: list[tuple[str, Any, str]] = [
    ("uint8", [torch.zeros(3, 32, 32, dtype=torch.uint8)], "images[0] has dtype torch.uint8"),
    ("gray", [torch.rand(3, 32, 32), torch.rand(1, 32, 32)], "images[1] has shape (1, 32, 32)"),
    ("rgba", [torch.rand(4, 32, 32)], "images[0] has shape (4, 32, 32)"),
    ("gray batch", torch.rand(2, 1, 32, 32), "images have 1 channel (shape (2, 1, 32, 32))"),
    ("single image tensor", torch.rand(3, 32, 32), "wrap a single image in a list"),
    ("empty", [], "got no images"),
    ("numpy-like", "image.png", "got str"),
]


@pytest.mark.parametrize(
    ("case", "images", "expected"), BAD_IMAGES, ids=[case for case, _, _ in BAD_IMAGES]
)
def test_bad_images_are_refused(
    model: torch.nn.Module, case: str, images: Any, expected: str
) -> None:
    model.eval()
    with pytest.raises(va.InvalidInputError, match="list of float \\(3, H, W\\) tensors") as info:
        model(images)
    assert expected in str(info.value)
    assert isinstance(info.value, ValueError)


def test_training_forward_needs_targets(model: torch.nn.Module) -> None:
    model.train()
    with pytest.raises(DetectionInputError, match=r"needs targets.*model\.eval\(\)"):
        model([torch.rand(3, 64, 64)])


def test_masks_are_checked_when_required(make_batch: Callable[..., Batch]) -> None:
    images, targets = make_batch(masks=True)
    validate_targets(images, targets, num_classes=4, masks=True)  # well formed
    wrong_size = _edit(targets, 1, masks=torch.zeros(1, 100, 96, dtype=torch.uint8))
    with pytest.raises(DetectionInputError, match=r"targets\[1\]\['masks'\] has shape"):
        validate_targets(images, wrong_size, num_classes=4, masks=True)
    float_masks = _edit(targets, 0, masks=targets[0]["masks"].float())
    with pytest.raises(DetectionInputError, match="uint8 or bool"):
        validate_targets(images, float_masks, num_classes=4, masks=True)
    without = [{k: v for k, v in t.items() if k != "masks"} for t in targets]
    with pytest.raises(DetectionInputError, match=r"targets\[0\] has no 'masks'"):
        validate_targets(images, without, num_classes=4, masks=True)


def test_valid_targets_pass_in_eval_too(
    model: torch.nn.Module, make_batch: Callable[..., Batch]
) -> None:
    images, targets = make_batch()
    model.eval()
    with torch.no_grad():
        predictions = model(images, targets)
    assert len(predictions) == 2
    bad = _edit(targets, 0, labels=torch.tensor([1, 9]))
    with pytest.raises(DetectionInputError, match="is 9"):
        model(images, bad)


def test_nan_pixels_are_named_when_checked(model: torch.nn.Module) -> None:
    images = [torch.rand(3, 64, 64), torch.rand(3, 48, 64)]
    images[1][0, :2, :2] = float("nan")
    images[1][1, 0, 0] = float("-inf")
    model.eval()
    with torch.no_grad(), va.checking_inputs(), pytest.raises(va.NonFiniteInputError) as info:
        model(images)
    assert info.value.counts == {1: (4, 0, 1)}
    message = str(info.value)
    assert "1 image given to object_detection/fcos holds non-finite pixel values" in message
    assert "images[1] has 4 NaN, 0 +inf and 1 -inf values" in message
