"""Semantic-segmentation samples: a normalized image and its class-index mask.

:class:`SegmentationDataset` reads :class:`~.folders.MaskPair` files on access and gives
``(image, mask)``: a ``(3, H, W)`` float32 image normalized with the ImageNet statistics
(the models' input) and an ``(H, W)`` int64 mask of class indices, ``IGNORE_INDEX`` where
no class applies. Training augments with ``torchvision.transforms.v2`` (the mask moves
with the image; see :data:`STEPS`); every sample then has the run's ``input_size``.
Evaluation resizes image and mask (nearest neighbour) to ``input_size``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from visionatlas.errors import DatasetError
from visionatlas.training.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    augment_steps,
    open_image,
    read_rgb,
)
from visionatlas_segmentation.data.folders import IGNORE_INDEX, MaskPair

__all__ = ["PRESETS", "STEPS", "SegmentationDataset", "read_mask"]

STEPS = MappingProxyType(
    {
        "scale_jitter": "resize the shorter side to 0.5-2x the input size",
        "crop": "random crop to the input size (padding with ignored pixels where short)",
        "flip": "horizontal flip, half the time",
        "colour": "brightness, contrast and saturation jitter of 0.2",
    }
)
"""Augmentation steps, applied in this order; without ``crop``, samples are resized."""
PRESETS = MappingProxyType({"default": ("scale_jitter", "crop", "flip", "colour")})
"""Named step lists (``"none"``: resize only)."""


def read_mask(path: Path, num_classes: int) -> np.ndarray:
    """The class indices of a mask file; values other than classes and ``IGNORE_INDEX``
    raise :class:`~visionatlas.DatasetError` naming the file and the values."""
    with open_image(path) as handle:
        values = np.asarray(handle, dtype=np.int64)
    found = np.unique(values)
    bad = found[(found >= num_classes) & (found != IGNORE_INDEX)]
    if bad.size:
        raise DatasetError(
            f"{path} holds mask values {bad[:10].tolist()} but there are {num_classes} "
            f"classes: accepted are 0-{num_classes - 1} and {IGNORE_INDEX} (ignored)",
            path=path,
        )
    return values


def _transform(input_size: tuple[int, int], steps: Sequence[str]) -> Any:
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    base = max(input_size)
    ops: list[Any] = []
    if "scale_jitter" in steps:
        ops.append(v2.RandomResize(base // 2, 2 * base + 1, antialias=True))
    if "crop" in steps:
        fill = {tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}
        ops.append(v2.RandomCrop(input_size, pad_if_needed=True, fill=fill))
    else:
        ops.append(v2.Resize(input_size, antialias=True))
    if "flip" in steps:
        ops.append(v2.RandomHorizontalFlip(0.5))
    if "colour" in steps:
        ops.append(v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2))
    ops += [
        v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ]
    return v2.Compose(ops)


class SegmentationDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """``(image, mask)`` pairs at ``input_size``; ``augment`` (a preset of :data:`PRESETS`,
    comma-separated :data:`STEPS`, or ``"none"``) applies when ``train`` is true."""

    def __init__(
        self,
        pairs: Sequence[MaskPair],
        num_classes: int,
        input_size: tuple[int, int],
        *,
        train: bool = False,
        augment: str = "none",
    ) -> None:
        self.pairs = list(pairs)
        self.num_classes = num_classes
        steps = augment_steps(augment, STEPS, PRESETS) if train else ()
        self.transform = _transform(tuple(input_size), steps)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision import tv_tensors
        from torchvision.transforms.v2 import functional as F

        pair = self.pairs[index]
        image = tv_tensors.Image(F.pil_to_tensor(read_rgb(pair.image)))
        mask = tv_tensors.Mask(torch.from_numpy(read_mask(pair.mask, self.num_classes)))
        image, mask = self.transform(image, mask)
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor).long()
