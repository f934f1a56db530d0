"""Training augmentation of oriented detection samples.

Aerial and top-down images have no "up": flips both ways and quarter turns give new,
equally likely views. They move the ``(cx, cy, w, h, angle)`` boxes and the polygons
exactly (a quarter turn maps pixels onto pixels; nothing is resampled) and keep the boxes
le90. ``augment`` is a preset of :data:`PRESETS` or a comma-separated list of the steps of
:data:`STEPS` (``"flip,colour"``); ``"none"`` turns augmentation off.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from visionatlas.training.images import augment_steps

__all__ = [
    "PRESETS",
    "STEPS",
    "flip_horizontal",
    "flip_vertical",
    "oriented_augmentation",
    "rotate90",
]

STEPS = MappingProxyType(
    {
        "flip": "horizontal flip and vertical flip, each half the time",
        "rotate90": "a quarter turn 0, 1, 2 or 3 times, each equally likely",
        "colour": "brightness, contrast and saturation jitter of 0.2",
    }
)
"""Augmentation steps, applied in this order, with what each does."""

PRESETS = MappingProxyType({"default": ("flip", "rotate90", "colour")})
"""Named step lists."""

Sample = tuple[Tensor, dict[str, Any]]


def _moved(target: dict[str, Any], boxes: Tensor, polygons: Tensor | None) -> dict[str, Any]:
    from visionatlas_oriented.boxes import normalize_boxes

    out = dict(target)
    out["boxes"] = normalize_boxes(boxes)
    if polygons is not None:
        out["polygons"] = polygons
    return out


def flip_horizontal(image: Tensor, target: dict[str, Any]) -> Sample:
    """Mirror left to right: ``x -> W - x``, ``angle -> -angle``."""
    width = image.shape[-1]
    boxes = target["boxes"].clone()
    boxes[..., 0] = width - boxes[..., 0]
    boxes[..., 4] = -boxes[..., 4]
    polygons = target.get("polygons")
    if polygons is not None:
        polygons = polygons.clone()
        polygons[..., 0] = width - polygons[..., 0]
    return image.flip(-1), _moved(target, boxes, polygons)


def flip_vertical(image: Tensor, target: dict[str, Any]) -> Sample:
    """Mirror top to bottom: ``y -> H - y``, ``angle -> -angle``."""
    height = image.shape[-2]
    boxes = target["boxes"].clone()
    boxes[..., 1] = height - boxes[..., 1]
    boxes[..., 4] = -boxes[..., 4]
    polygons = target.get("polygons")
    if polygons is not None:
        polygons = polygons.clone()
        polygons[..., 1] = height - polygons[..., 1]
    return image.flip(-2), _moved(target, boxes, polygons)


def rotate90(image: Tensor, target: dict[str, Any], turns: int = 1) -> Sample:
    """Turn a quarter ``turns`` times counter-clockwise as seen on screen (``torch.rot90``):
    each turn maps ``(x, y) -> (y, W - x)`` and ``angle -> angle - pi/2``."""
    boxes, polygons = target["boxes"].clone(), target.get("polygons")
    for _ in range(turns % 4):
        width = image.shape[-1]
        image = torch.rot90(image, 1, dims=(-2, -1))
        cx = boxes[..., 0].clone()
        boxes[..., 0], boxes[..., 1] = boxes[..., 1].clone(), width - cx
        boxes[..., 4] = boxes[..., 4] - math.pi / 2
        if polygons is not None:
            polygons = torch.stack([polygons[..., 1], width - polygons[..., 0]], dim=-1)
    return image, _moved(target, boxes, polygons)


class _FlipRotate:
    """Random flips and quarter turns, drawn from torch's generator."""

    def __init__(self, flip: bool, rotate: bool) -> None:
        self.flip, self.rotate = flip, rotate

    def __call__(self, image: Tensor, target: dict[str, Any]) -> Sample:
        if self.flip:
            if float(torch.rand(())) < 0.5:
                image, target = flip_horizontal(image, target)
            if float(torch.rand(())) < 0.5:
                image, target = flip_vertical(image, target)
        if self.rotate:
            image, target = rotate90(image, target, int(torch.randint(4, ())))
        return image, target


def oriented_augmentation(preset: str) -> Callable[[Tensor, dict[str, Any]], Sample] | None:
    """``transform(image, target)`` for the ``augment`` setting, ``None`` for no step."""
    steps = augment_steps(preset, STEPS, PRESETS)
    if not steps:
        return None
    geometric = _FlipRotate("flip" in steps, "rotate90" in steps)
    jitter: Callable[[Tensor], Tensor] | None = None
    if "colour" in steps:
        from torchvision.transforms import v2

        jitter = v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2)

    def apply(image: Tensor, target: dict[str, Any]) -> Sample:
        image, target = geometric(image, target)
        if jitter is not None:
            image = jitter(image)
        return image, target

    return apply
