"""Checks of the images and masks a segmentation model receives.

Shape, dtype and device checks read metadata only; the label-range check is one fused
elementwise pass and a single host synchronisation, which also tells the loss whether any
pixel is left to learn from.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from visionatlas.errors import InvalidInputError

__all__ = ["SegmentationTargetError", "check_images", "check_targets"]

_SHOWN_LABELS = 8


class SegmentationTargetError(InvalidInputError):
    """Masks that a segmentation model cannot learn from (shape, dtype or labels)."""


def _shape(value: Tensor) -> tuple[int, ...]:
    return tuple(value.shape)


def check_images(images: Any) -> None:
    """Raise if ``images`` is not a floating-point ``(N, C, H, W)`` tensor."""
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a (N, 3, H, W) float tensor, got {type(images).__name__}")
    if images.dim() != 4:
        hint = "; add the batch dimension with images.unsqueeze(0)" if images.dim() == 3 else ""
        raise ValueError(f"images must be a (N, 3, H, W) batch, got shape {_shape(images)}{hint}")
    if not images.is_floating_point():
        raise TypeError(
            f"images must be floating point (normalized floats), got {images.dtype}; "
            "convert with images.float() / 255 and normalize"
        )


def check_targets(images: Tensor, targets: Any, *, num_classes: int, ignore_index: int) -> bool:
    """Raise :class:`SegmentationTargetError` for masks that do not fit ``images``.

    ``targets`` must be an int64 ``(N, H, W)`` tensor on the images' device whose values are
    class indices in ``[0, num_classes)`` or ``ignore_index``. Returns whether any pixel is
    not ignored.
    """
    if not isinstance(targets, Tensor):
        raise TypeError(
            "targets must be a (N, H, W) int64 tensor of class indices, got "
            f"{type(targets).__name__}; stack per-image masks with torch.stack"
        )
    if targets.dim() != 3:
        hint = ""
        if targets.dim() == 4 and targets.shape[1] == 1:
            hint = "; drop the channel dimension with targets[:, 0]"
        elif targets.dim() == 2:
            hint = "; add the batch dimension with targets.unsqueeze(0)"
        raise SegmentationTargetError(
            f"targets must be (N, H, W) class indices, got shape {_shape(targets)}{hint}"
        )
    if targets.dtype != torch.int64:
        hint = " (round float masks first)" if targets.is_floating_point() else ""
        raise SegmentationTargetError(
            f"targets must be int64 class indices, got {targets.dtype}; convert with "
            f"targets.long(){hint}"
        )
    if targets.shape[0] != images.shape[0]:
        raise SegmentationTargetError(
            f"batch size mismatch: {images.shape[0]} images but {targets.shape[0]} masks"
        )
    if targets.shape[-2:] != images.shape[-2:]:
        mask_h, mask_w = targets.shape[-2:]
        image_h, image_w = images.shape[-2:]
        raise SegmentationTargetError(
            f"mask size {mask_h}x{mask_w} differs from image size {image_h}x{image_w}; "
            "resize masks with nearest-neighbour interpolation along with their images"
        )
    if targets.device != images.device:
        raise SegmentationTargetError(
            f"targets are on {targets.device} but images on {images.device}; move them with "
            "targets.to(images.device)"
        )
    counted = targets != ignore_index
    bad = counted & ((targets < 0) | (targets >= num_classes))
    has_bad, has_counted = torch.stack((bad.any(), counted.any())).tolist()
    if has_bad:
        labels = torch.unique(targets[bad]).tolist()
        shown = ", ".join(str(v) for v in labels[:_SHOWN_LABELS])
        more = f", ... ({len(labels) - _SHOWN_LABELS} more)" if len(labels) > _SHOWN_LABELS else ""
        raise SegmentationTargetError(
            f"targets hold labels {shown}{more}, outside the class range [0, {num_classes - 1}] "
            f"and not the ignore index {ignore_index}; the model has num_classes={num_classes}"
        )
    return bool(has_counted)
