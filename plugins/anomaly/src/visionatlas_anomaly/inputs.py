"""Validation of the image batches the detector accepts."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["ImageSizeError", "InvalidImagesError", "check_image_size", "check_images"]


class InvalidImagesError(ValueError):
    """Images are not a ``(N, 3, H, W)`` floating-point tensor with values in [0, 1]."""


class ImageSizeError(InvalidImagesError):
    """Images are not the size the detector was fitted at."""


def check_images(images: object, what: str = "images") -> Tensor:
    """Return ``images`` if it is a non-empty ``(N, 3, H, W)`` float tensor in [0, 1].

    Values are not inspected on the ``meta`` device (shape inference).
    """
    if not isinstance(images, Tensor):
        raise InvalidImagesError(
            f"{what} must be a torch.Tensor of shape (N, 3, H, W), got {type(images).__name__}"
        )
    if images.dim() != 4:
        raise InvalidImagesError(
            f"{what} must have shape (N, 3, H, W), got {images.dim()} dimensions "
            f"{tuple(images.shape)}"
        )
    n, channels, height, width = images.shape
    if channels != 3:
        raise InvalidImagesError(
            f"{what} must have 3 (RGB) channels, got {channels} (shape {tuple(images.shape)}); "
            "convert grayscale with images.expand(-1, 3, -1, -1)"
        )
    if n == 0 or height == 0 or width == 0:
        raise InvalidImagesError(f"{what} is empty (shape {tuple(images.shape)})")
    if not images.is_floating_point():
        raise InvalidImagesError(
            f"{what} must be floating point with values in [0, 1], got dtype {images.dtype}; "
            "divide uint8 images by 255"
        )
    if images.device.type != "meta":
        low, high = torch.aminmax(images.detach())
        if not (bool(torch.isfinite(low)) and bool(torch.isfinite(high))):
            raise InvalidImagesError(f"{what} contain NaN or infinite values")
        if low.item() < 0.0 or high.item() > 1.0:
            raise InvalidImagesError(
                f"{what} must have values in [0, 1], got values in "
                f"[{low.item():.4g}, {high.item():.4g}]"
            )
    return images


def check_image_size(images: Tensor, size: tuple[int, int], what: str = "images") -> Tensor:
    """Return ``images`` if they are ``size`` = ``(H, W)``, the size the detector was fitted at."""
    height, width = images.shape[-2:]
    if (height, width) != tuple(size):
        raise ImageSizeError(
            f"{what} are {height}x{width} (HxW) but the detector was fitted on "
            f"{size[0]}x{size[1]} images, and scores are only calibrated at that size; resize "
            "them alike (detector.resize(images), or detector.read_images(files) for image "
            "files), or pass any_size=True if their content has the training images' scale"
        )
    return images
