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
from visionatlas.training.images import IMAGE_SUFFIXES, open_image, scan_images
from visionatlas.training.protocol import SkippedFile

__all__ = [
    "IMAGE_SUFFIXES",
    "DatasetLayoutError",
    "ImageTooLargeError",
    "MVTecCategory",
    "NormalImages",
    "TestImages",
    "image_files",
    "load_images",
    "open_image",
    "read_category",
    "read_normal_images",
    "read_test_images",
]

GOOD = "good"

DatasetLayoutError = DatasetError
"""A folder does not follow the expected layout (names what is missing or wrong).

The core's :class:`~visionatlas.DatasetError`; its image errors
(:class:`~visionatlas.ImageReadError`, :class:`~visionatlas.ImageTooLargeError`, raised by
:func:`visionatlas.training.images.open_image`) are subclasses.
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


Size = tuple[int, int]


def _size(image_size: int | Size | None) -> Size | None:
    if image_size is None or isinstance(image_size, tuple):
        return image_size
    return (image_size, image_size)


def _readable(paths: list[Path], strict: bool) -> tuple[list[Path], list[SkippedFile]]:
    """``paths`` as they are when ``strict`` (an unreadable one raises when it is read),
    else only the readable ones, the others skipped with a warning naming each."""
    if strict:
        return paths, []
    return scan_images(paths, strict=False)


@dataclass
class NormalImages:
    """The anomaly-free images of a category: ``train/good`` and ``validation/good``."""

    train: Tensor
    """``(N, 3, H, W)`` normal training images."""
    validation: Tensor | None
    """Held-out normal images from ``validation/good``, if the folder holds any."""
    skipped: list[SkippedFile]
    """Unreadable files left out (only when not strict)."""


@dataclass
class TestImages:
    """The test split of a category, with its ground truth."""

    images: Tensor
    """``(M, 3, H, W)`` test images."""
    masks: Tensor
    """``(M, H, W)`` boolean ground truth (all False for ``good`` images)."""
    labels: Tensor
    """``(M,)`` 1 for defective, 0 for normal test images."""
    defects: list[str]
    """Defect type of every test image (``"good"`` for normal ones)."""
    files: list[Path]
    skipped: list[SkippedFile]
    """Unreadable test images left out (only when not strict)."""


def _check_root(root: Path) -> None:
    if not root.is_dir():
        raise DatasetLayoutError(f"dataset folder {root} does not exist", path=root)


def read_normal_images(
    folder: str | Path, *, image_size: int | Size | None = None, strict: bool = True
) -> NormalImages:
    """``train/good`` (and ``validation/good``, if present) of the category ``folder``.

    Images are resized to ``image_size`` (a side or ``(H, W)``); without it they keep
    their size, which must agree, and ``validation/good`` is resized to it. Unreadable
    images raise :class:`~visionatlas.ImageReadError`, or with ``strict=False`` are
    skipped with a :class:`~visionatlas.training.images.SkippedImageWarning` naming each.
    """
    root = Path(folder)
    _check_root(root)
    train_dir = root / "train" / GOOD
    if not train_dir.is_dir():
        raise DatasetLayoutError(
            f"{root} has no train/good folder; expected the MVTec AD layout "
            "<category>/train/good/*.png, <category>/test/<defect>/*.png, "
            "<category>/ground_truth/<defect>/<name>_mask.png",
            path=root,
        )
    train_files, skipped = _readable(image_files(train_dir), strict)
    if not train_files:
        unreadable = f" ({len(skipped)} unreadable)" if skipped else ""
        raise DatasetLayoutError(
            f"{train_dir} holds no images{unreadable} ({', '.join(IMAGE_SUFFIXES)} are read)",
            path=train_dir,
        )
    train = load_images(train_files, _size(image_size))
    target: Size = (int(train.shape[-2]), int(train.shape[-1]))
    validation = None
    validation_dir = root / "validation" / GOOD
    if validation_dir.is_dir():
        validation_files, more = _readable(image_files(validation_dir), strict)
        skipped += more
        if validation_files:
            validation = load_images(validation_files, target)
    return NormalImages(train=train, validation=validation, skipped=skipped)


def read_test_images(
    folder: str | Path,
    *,
    image_size: int | Size | None = None,
    strict: bool = True,
    required: bool = True,
) -> TestImages:
    """``test/<defect>/*`` of the category ``folder`` with their masks from
    ``ground_truth/<defect>/<name>_mask.png`` (``test/good`` images need none).

    Images and masks are resized to ``image_size``; without it they keep the size of the
    first test image, which all must have. Masks are checked against their image's own
    size first. ``required``: no test images is an error. ``strict`` as in
    :func:`read_normal_images` (for test images; a bad mask is always an error).
    """
    root = Path(folder)
    _check_root(root)
    size = _size(image_size)
    images: list[Tensor] = []
    masks: list[Tensor] = []
    defects: list[str] = []
    files: list[Path] = []
    skipped: list[SkippedFile] = []
    test_dir = root / "test"
    if test_dir.is_dir():
        for defect_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()):
            paths, more = _readable(image_files(defect_dir), strict)
            skipped += more
            for path in paths:
                if size is None:
                    with open_image(path) as handle:
                        size = (handle.size[1], handle.size[0])
                image, mask = _test_item(root, defect_dir.name, path, size)
                images.append(image)
                masks.append(mask)
                defects.append(defect_dir.name)
                files.append(path)
    if required and not images:
        raise DatasetLayoutError(
            f"{root} has no test images (test/<defect>/*.png, with test/good for normal "
            "ones and ground_truth/<defect>/<name>_mask.png for defective ones)",
            path=root,
        )
    height, width = size if size is not None else (0, 0)
    return TestImages(
        images=torch.stack(images) if images else torch.empty(0, 3, height, width),
        masks=torch.stack(masks) if masks else torch.empty(0, height, width, dtype=torch.bool),
        labels=torch.tensor([int(d != GOOD) for d in defects], dtype=torch.long),
        defects=defects,
        files=files,
        skipped=skipped,
    )


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
    normal = read_normal_images(root, image_size=image_size)
    target: Size = (int(normal.train.shape[-2]), int(normal.train.shape[-1]))
    test = read_test_images(root, image_size=target, required=require_test)
    return MVTecCategory(
        name=root.name,
        train=normal.train,
        validation=normal.validation,
        test=test.images,
        masks=test.masks,
        labels=test.labels,
        defects=test.defects,
        test_files=test.files,
    )


def _test_item(root: Path, defect: str, path: Path, size: Size) -> tuple[Tensor, Tensor]:
    with open_image(path) as handle:
        original = (handle.size[1], handle.size[0])
    image = _read_rgb(path, size)
    if defect == GOOD:
        return image, torch.zeros(size, dtype=torch.bool)
    mask_path = root / "ground_truth" / defect / f"{path.stem}_mask.png"
    if not mask_path.is_file():
        raise DatasetLayoutError(
            f"defective test image {path} has no mask at {mask_path}", path=mask_path
        )
    mask = _read_mask(mask_path, original, path)
    if original != size:
        resized = torch.nn.functional.interpolate(
            mask[None, None].float(), size=size, mode="nearest"
        )
        mask = resized[0, 0] > 0.5
    return image, mask
