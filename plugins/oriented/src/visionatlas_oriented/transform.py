"""Resizing, normalisation and batching of the oriented detectors' inputs.

Each image is resized by one factor (shorter side to ``min_size``, longer side at most
``max_size``, as torchvision's detection transform does), so a rotated box stays a rotated
box: its centre and sides scale by that factor and its angle is unchanged. Images are
padded at the bottom and right to a common size divisible by the largest stride.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["Batch", "OrientedTransform", "scale_boxes"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def scale_boxes(boxes: Tensor, factor: float) -> Tensor:
    """``(cx, cy, w, h, angle)`` boxes of an image resized by ``factor`` (angle kept)."""
    scaled = boxes.clone()
    scaled[..., :4] = boxes[..., :4] * factor
    return scaled


@dataclass(frozen=True)
class Batch:
    """A padded image batch, each image's resized size and its resize factor."""

    images: Tensor
    sizes: list[tuple[int, int]]
    factors: list[float]


class OrientedTransform(nn.Module):
    """``images -> Batch`` (and targets with boxes in the resized images' pixels)."""

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        min_size: int,
        max_size: int,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        size_divisible: int = 32,
    ) -> None:
        super().__init__()
        self.min_size, self.max_size, self.size_divisible = min_size, max_size, size_divisible
        self.register_buffer("mean", torch.tensor(list(mean)).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std)).view(3, 1, 1), persistent=False)

    def factor(self, height: int, width: int) -> float:
        """The resize factor of an image of ``height x width``."""
        short, long = min(height, width), max(height, width)
        return min(self.min_size / short, self.max_size / long)

    def forward(
        self, images: Sequence[Tensor], targets: Sequence[dict[str, Any]] | None = None
    ) -> tuple[Batch, list[dict[str, Any]] | None]:
        resized, sizes, factors = [], [], []
        for image in images:
            height, width = int(image.shape[-2]), int(image.shape[-1])
            factor = self.factor(height, width)
            size = (max(1, round(height * factor)), max(1, round(width * factor)))
            normalised = (image - self.mean.to(image)) / self.std.to(image)
            if size != (height, width):
                normalised = F.interpolate(
                    normalised[None], size=size, mode="bilinear", align_corners=False
                )[0]
            resized.append(normalised)
            sizes.append(size)
            factors.append(factor)
        stride = self.size_divisible
        height = -(-max(s[0] for s in sizes) // stride) * stride
        width = -(-max(s[1] for s in sizes) // stride) * stride
        batch = resized[0].new_zeros((len(resized), 3, height, width))
        for index, image in enumerate(resized):
            batch[index, :, : image.shape[1], : image.shape[2]] = image
        scaled = None
        if targets is not None:
            scaled = [
                {**t, "boxes": scale_boxes(t["boxes"], f)}
                for t, f in zip(targets, factors, strict=True)
            ]
        return Batch(batch, sizes, factors), scaled
