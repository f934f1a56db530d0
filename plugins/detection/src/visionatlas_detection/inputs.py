"""The train/eval input contract of detectors: images and targets, checked cheaply.

Images are a list of float ``(3, H, W)`` tensors in [0, 1] (sizes may differ) or a batched
``(N, 3, H, W)`` tensor. Targets are one dict per image with ``boxes`` (float ``(K, 4)``,
``x1, y1, x2, y2`` in input pixels), ``labels`` (int64 ``(K,)``, in ``[1, num_classes - 1]``;
0 is the background) and, for instance segmentation, ``masks`` (uint8 or bool ``(K, H, W)``).

Shape and dtype checks touch no tensor data; the value checks (boxes well formed, labels in
range) read all targets with a single reduction, so they cost one device synchronisation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from visionatlas.errors import InvalidInputError

__all__ = ["DetectionInputError", "as_image_list", "example_images", "validate_targets"]

_IMAGES = "images must be a list of float (3, H, W) tensors in [0, 1] or a (N, 3, H, W) tensor"
_BOXES = "boxes are float (K, 4) tensors of (x1, y1, x2, y2) in input pixels, x1 < x2, y1 < y2"


class DetectionInputError(InvalidInputError):
    """Images or targets given to a detector do not follow the input contract.

    Models built by ``create_model`` check images before the detector does, with the core's
    :class:`~visionatlas.errors.InvalidInputError` (this class's base).
    """


def as_image_list(images: Any) -> list[Tensor]:
    """The images as a list of ``(3, H, W)`` float tensors; raise on anything else."""
    if isinstance(images, Tensor):
        if images.dim() != 4:
            raise DetectionInputError(
                f"got a tensor of shape {tuple(images.shape)}; {_IMAGES} "
                "(wrap a single image in a list)"
            )
        items: list[Tensor] = list(images.unbind(0))
    elif isinstance(images, list | tuple):
        items = list(images)
    else:
        raise DetectionInputError(f"got {type(images).__name__}; {_IMAGES}")
    if not items:
        raise DetectionInputError(f"got no images; {_IMAGES}")
    for index, image in enumerate(items):
        if not isinstance(image, Tensor):
            raise DetectionInputError(f"images[{index}] is a {type(image).__name__}; {_IMAGES}")
        if image.dim() != 3 or image.shape[0] != 3 or image.shape[1] < 1 or image.shape[2] < 1:
            raise DetectionInputError(f"images[{index}] has shape {tuple(image.shape)}; {_IMAGES}")
        if not image.is_floating_point():
            raise DetectionInputError(
                f"images[{index}] has dtype {image.dtype}; {_IMAGES} "
                "(convert uint8 images with image.float() / 255)"
            )
    return items


def _tensor_field(target: Mapping[str, Any], key: str, index: int, what: str) -> Tensor:
    if key not in target:
        raise DetectionInputError(
            f"targets[{index}] has no {key!r} (keys: {sorted(map(str, target))}); {what}"
        )
    value = target[key]
    if not isinstance(value, Tensor):
        raise DetectionInputError(f"targets[{index}][{key!r}] is a {type(value).__name__}; {what}")
    return value


def validate_targets(
    images: Sequence[Tensor],
    targets: Any,
    *,
    num_classes: int,
    masks: bool = False,
) -> None:
    """Raise :class:`DetectionInputError` naming the image and box that break the contract."""
    labels_rule = (
        f"labels are int64 (K,) tensors in [1, {num_classes - 1}] (num_classes={num_classes} "
        "counts the background, label 0)"
    )
    masks_rule = "masks are uint8 or bool (K, H, W) tensors, H and W those of the image"
    if not isinstance(targets, list | tuple):
        raise DetectionInputError(
            f"targets must be a list with one dict per image, got {type(targets).__name__}"
        )
    if len(targets) != len(images):
        raise DetectionInputError(
            f"got {len(images)} images but {len(targets)} targets; give one dict per image"
        )
    all_boxes: list[Tensor] = []
    all_labels: list[Tensor] = []
    for index, (image, target) in enumerate(zip(images, targets, strict=True)):
        if not isinstance(target, Mapping):
            raise DetectionInputError(
                f"targets[{index}] is a {type(target).__name__}, not a dict with 'boxes' and "
                "'labels'"
            )
        boxes = _tensor_field(target, "boxes", index, _BOXES)
        if boxes.dim() != 2 or boxes.shape[1] != 4 or not boxes.is_floating_point():
            raise DetectionInputError(
                f"targets[{index}]['boxes'] has shape {tuple(boxes.shape)} and dtype "
                f"{boxes.dtype}; {_BOXES}"
            )
        labels = _tensor_field(target, "labels", index, labels_rule)
        if labels.dtype != torch.int64 or labels.dim() != 1:
            raise DetectionInputError(
                f"targets[{index}]['labels'] has shape {tuple(labels.shape)} and dtype "
                f"{labels.dtype}; {labels_rule}"
            )
        if labels.shape[0] != boxes.shape[0]:
            raise DetectionInputError(
                f"targets[{index}] has {boxes.shape[0]} boxes but {labels.shape[0]} labels; "
                "give one label per box"
            )
        if masks:
            mask = _tensor_field(target, "masks", index, masks_rule)
            expected = (boxes.shape[0], image.shape[1], image.shape[2])
            if tuple(mask.shape) != expected or mask.dtype not in (torch.uint8, torch.bool):
                raise DetectionInputError(
                    f"targets[{index}]['masks'] has shape {tuple(mask.shape)} and dtype "
                    f"{mask.dtype}, expected {expected} for {boxes.shape[0]} boxes on an image "
                    f"of {image.shape[1]}x{image.shape[2]}; {masks_rule}"
                )
        all_boxes.append(boxes)
        all_labels.append(labels)
    _check_values(all_boxes, all_labels, num_classes, labels_rule)


def _check_values(
    boxes: list[Tensor], labels: list[Tensor], num_classes: int, labels_rule: str
) -> None:
    """One reduction over every target; the slow search runs only when something is wrong."""
    if not any(b.shape[0] for b in boxes):
        return
    flat_boxes = torch.cat([b.detach().to(labels[0].device, torch.float32) for b in boxes])
    flat_labels = torch.cat([lb.detach().to(labels[0].device) for lb in labels])
    bad_box = ~((flat_boxes[:, 2] > flat_boxes[:, 0]) & (flat_boxes[:, 3] > flat_boxes[:, 1]))
    bad_box |= ~torch.isfinite(flat_boxes).all(dim=1)
    bad_label = (flat_labels < 1) | (flat_labels >= num_classes)
    if not bool((bad_box | bad_label).any()):
        return
    for index, (image_boxes, image_labels) in enumerate(zip(boxes, labels, strict=True)):
        for k in range(image_boxes.shape[0]):
            box = [float(v) for v in image_boxes[k].tolist()]
            x1, y1, x2, y2 = box
            if not all(map(_finite, box)):
                raise DetectionInputError(
                    f"targets[{index}]['boxes'][{k}] is {box}: not finite; {_BOXES}"
                )
            if x2 <= x1 or y2 <= y1:
                side = "x2 <= x1" if x2 <= x1 else "y2 <= y1"
                raise DetectionInputError(
                    f"targets[{index}]['boxes'][{k}] is {box}: {side} (degenerate or "
                    f"reversed box); {_BOXES}"
                )
            label = int(image_labels[k])
            if not 1 <= label < num_classes:
                raise DetectionInputError(
                    f"targets[{index}]['labels'][{k}] is {label}, outside [1, "
                    f"{num_classes - 1}]; {labels_rule}"
                )
    raise DetectionInputError(f"targets hold an invalid box or label; {_BOXES}; {labels_rule}")


def _finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")


def example_images(
    *, batch_size: int = 2, input_size: tuple[int, int] = (224, 224)
) -> list[Tensor]:
    """A synthetic eval batch: ``batch_size`` random ``(3, H, W)`` images in [0, 1]."""
    height, width = input_size
    return [torch.rand(3, height, width) for _ in range(batch_size)]
