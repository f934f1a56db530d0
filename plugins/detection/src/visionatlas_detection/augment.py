"""Training augmentation of detection and instance-segmentation samples.

Built from ``torchvision.transforms.v2``, which moves boxes and masks with the image. The
detectors resize their inputs themselves (``min_size``/``max_size``), so a plain resize
would be undone there: scale is varied by padding (objects shrink) and cropping (objects
grow) instead. ``augment`` is a preset of :data:`PRESETS` or a comma-separated list of the
steps of :data:`STEPS` (``"flip,crop"``); ``"none"`` turns augmentation off.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from visionatlas.training.images import augment_steps

__all__ = ["PRESETS", "STEPS", "detection_augmentation"]

STEPS = MappingProxyType(
    {
        "scale_jitter": "half the time, pad the image to 1-2x its sides (objects shrink)",
        "crop": "SSD-style random crop keeping objects that overlap it (objects grow)",
        "flip": "horizontal flip, half the time",
        "colour": "brightness, contrast and saturation jitter of 0.2",
    }
)
"""Augmentation steps, applied in this order, with what each does."""

PRESETS = MappingProxyType(
    {"default": ("flip", "colour"), "strong": ("scale_jitter", "crop", "flip", "colour")}
)
"""Named step lists: ``default`` keeps object sizes; ``strong`` varies them too."""

Sample = tuple[Any, Any]


def detection_augmentation(augment: str) -> Callable[[Any, Any], Sample] | None:
    """``transform(image, target)`` for the ``augment`` setting, ``None`` for no step."""
    steps = augment_steps(augment, STEPS, PRESETS)
    if not steps:
        return None
    from torchvision.transforms import v2

    def build(step: str) -> Any:
        if step == "scale_jitter":
            return v2.RandomZoomOut(fill=0.5, side_range=(1.0, 2.0), p=0.5)
        if step == "crop":
            return _BoxCrop(v2.RandomIoUCrop())
        if step == "flip":
            return v2.RandomHorizontalFlip(0.5)
        return v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2)

    transforms = [build(step) for step in steps]
    if "crop" in steps or "scale_jitter" in steps:  # drop boxes (and masks) cut to nothing
        transforms.append(v2.SanitizeBoundingBoxes(min_size=1.0))
    transform = v2.Compose(transforms)

    def apply(image: Any, target: Any) -> Sample:
        out: Sample = transform(image, target)
        return out

    return apply


class _BoxCrop:
    """``RandomIoUCrop`` on images that have objects; a negative image stays as it is
    (the crop looks for boxes to keep)."""

    def __init__(self, crop: Any) -> None:
        self.crop = crop

    def __call__(self, image: Any, target: Any) -> Sample:
        if len(target["boxes"]) == 0:
            return image, target
        out: Sample = self.crop(image, target)
        return out
