"""Reading image folders and datasets in the MVTec AD layout.

``<category>/train/good/*.png`` (normal training images), optionally
``<category>/validation/good/*.png`` (held-out normal images, used for calibration),
``<category>/test/<defect>/*.png`` with ``test/good`` for normal test images, and
``<category>/ground_truth/<defect>/<name>_mask.png`` for every defective test image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from visionatlas.errors import DatasetError, ImageTooLargeError
from visionatlas.images import IMAGE_SUFFIXES, open_image

__all__ = [
    "IMAGE_SUFFIXES",
    "DatasetLayoutError",
    "ImageTooLargeError",
    "MVTecCategory",
    "image_files",
    "load_images",
    "open_image",
    "read_category",
]

GOOD = "good"

DatasetLayoutError = DatasetError
"""A folder does not follow the expected layout (names what is missing or wrong).

The core's :class:`~visionatlas.DatasetError`; its image errors
(:class:`~visionatlas.ImageReadError`, :class:`~visionatlas.ImageTooLargeError`, raised by
:func:`visionatlas.images.open_image`) are subclasses.
"""


def image_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    if not folder.is_dir():
        raise DatasetLayoutError(f"{folder} is not a directory")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _read_rgb(path: Path, size: tuple[int, int] | None) -> Tensor:
    from PIL import Image

    with open_image(path) as handle:
        image = handle.convert("RGB")
        if size is not None and image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def load_images(paths: Sequence[Path], size: tuple[int, int] | None = None) -> Tensor:
    """``(N, 3, H, W)`` float images in [0, 1]; all must share a size unless ``size`` is set."""
    if not paths:
        raise DatasetLayoutError("no images to load")
    images = [_read_rgb(p, size) for p in paths]
    shapes = {tuple(image.shape[1:]) for image in images}
    if len(shapes) > 1:
        raise DatasetLayoutError(
            f"images have different sizes {sorted(shapes)}; pass an image size to resize them"
        )
    return torch.stack(images)


def _read_mask(path: Path, size: tuple[int, int], image: Path) -> Tensor:
    with open_image(path) as handle:
        mask = handle.convert("L")
        if size is not None and mask.size != (size[1], size[0]):
            raise DatasetLayoutError(
                f"mask {path} is {mask.size[0]}x{mask.size[1]} but its image {image} is "
                f"{size[1]}x{size[0]} (width x height); masks must match their images"
            )
        return torch.from_numpy(np.asarray(mask) > 127)


@dataclass
class MVTecCategory:
    """One category of an MVTec-AD-style dataset, loaded into memory."""

    name: str
    train: Tensor
    """``(N, 3, H, W)`` normal training images."""
    validation: Tensor | None
    """Held-out normal images from ``validation/good``, if the folder exists."""
    test: Tensor
    """``(M, 3, H, W)`` test images."""
    masks: Tensor
    """``(M, H, W)`` boolean ground truth (all False for ``good`` images)."""
    labels: Tensor
    """``(M,)`` 1 for defective, 0 for normal test images."""
    defects: list[str]
    """Defect type of every test image (``"good"`` for normal ones)."""
    test_files: list[Path]


def read_category(
    folder: str | Path, *, image_size: int | None = None, require_test: bool = True
) -> MVTecCategory:
    """Read ``folder`` (one MVTec AD category); resize images to ``image_size`` if given.

    Masks are read at the original image size, checked against it, then resized alike.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DatasetLayoutError(f"dataset folder {root} does not exist")
    train_dir = root / "train" / GOOD
    if not train_dir.is_dir():
        raise DatasetLayoutError(
            f"{root} has no train/good folder; expected the MVTec AD layout "
            "<category>/train/good/*.png, <category>/test/<defect>/*.png, "
            "<category>/ground_truth/<defect>/<name>_mask.png"
        )
    train_files = image_files(train_dir)
    if not train_files:
        raise DatasetLayoutError(
            f"{train_dir} holds no images ({', '.join(IMAGE_SUFFIXES)} are read)"
        )
    size = None if image_size is None else (image_size, image_size)
    train = load_images(train_files, size)
    target = tuple(train.shape[-2:])
    validation = None
    validation_dir = root / "validation" / GOOD
    if validation_dir.is_dir() and image_files(validation_dir):
        validation = load_images(image_files(validation_dir), target)  # type: ignore[arg-type]
    test_dir = root / "test"
    images: list[Tensor] = []
    masks: list[Tensor] = []
    defects: list[str] = []
    files: list[Path] = []
    if test_dir.is_dir():
        for defect_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()):
            for path in image_files(defect_dir):
                image, mask = _test_item(root, defect_dir.name, path, target)  # type: ignore[arg-type]
                images.append(image)
                masks.append(mask)
                defects.append(defect_dir.name)
                files.append(path)
    if require_test and not images:
        raise DatasetLayoutError(f"{root} has no test images (test/<defect>/*.png)")
    height, width = target
    return MVTecCategory(
        name=root.name,
        train=train,
        validation=validation,
        test=torch.stack(images) if images else torch.empty(0, 3, height, width),
        masks=torch.stack(masks) if masks else torch.empty(0, height, width, dtype=torch.bool),
        labels=torch.tensor([int(d != GOOD) for d in defects], dtype=torch.long),
        defects=defects,
        test_files=files,
    )


def _test_item(root: Path, defect: str, path: Path, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    with open_image(path) as handle:
        original = (handle.size[1], handle.size[0])
    image = _read_rgb(path, size)
    if defect == GOOD:
        return image, torch.zeros(size, dtype=torch.bool)
    mask_path = root / "ground_truth" / defect / f"{path.stem}_mask.png"
    if not mask_path.is_file():
        raise DatasetLayoutError(f"defective test image {path} has no mask at {mask_path}")
    mask = _read_mask(mask_path, original, path)
    if original != size:
        resized = torch.nn.functional.interpolate(
            mask[None, None].float(), size=size, mode="nearest"
        )
        mask = resized[0, 0] > 0.5
    return image, mask
