"""Semantic-segmentation data on disk: images paired with class-index masks.

Three layouts are read (:func:`read_mask_folders` tells them apart):

- **mask folders**: ``{train,val}/images/`` beside ``{train,val}/masks/`` (or, without
  splits, ``images/`` and ``masks/`` at the top), a mask being the PNG with its image's
  stem; ``classes.txt`` at the top names the classes, line ``i`` for mask value ``i``.
- **Pascal VOC**: ``JPEGImages/``, ``SegmentationClass/`` (palette PNGs) and
  ``ImageSets/Segmentation/{train,val}.txt``; the classes are VOC's 21 unless a
  ``classes.txt`` says otherwise.
- **Cityscapes**: ``leftImg8bit/{train,val}/CITY/*_leftImg8bit.png`` with
  ``gtFine/{train,val}/CITY/*_gtFine_labelTrainIds.png`` (cityscapesScripts'
  ``createTrainIdLabelImgs`` writes them); the 19 training classes.

Masks are palette (``P``) or greyscale (``L``, ``I;16``) PNGs whose pixel values are class
indices; :data:`IGNORE_INDEX` (255, VOC's borders and Cityscapes' void) marks pixels left
out of the loss and the metrics. Sizes and modes are checked when the folder is read, the
values when a mask is loaded; each refusal names the file and what is accepted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from visionatlas.errors import DatasetError
from visionatlas.training.images import list_images, open_image

__all__ = [
    "CITYSCAPES_CLASSES",
    "IGNORE_INDEX",
    "MASK_MODES",
    "VOC_CLASS_NAMES",
    "MaskPair",
    "read_classes",
    "read_mask_folders",
]

IGNORE_INDEX = 255
"""Mask value of pixels that no class covers (left out of the loss and the metrics)."""
MASK_MODES = ("P", "L", "I;16")
"""PIL modes of masks whose pixel values are class indices."""
CLASSES_FILE = "classes.txt"

VOC_CLASS_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip


@dataclass(frozen=True)
class MaskPair:
    """An image and its mask, both checked to have the same size."""

    image: Path
    mask: Path


Splits = tuple[list[MaskPair], list[MaskPair] | None, list[str]]
"""``(train, val or None when the data has no split, class names)``."""


def read_classes(file: Path) -> list[str]:
    """Class names, one per line (blank lines and ``#`` comments skipped), unique."""
    names = [
        line.strip()
        for line in file.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not names:
        raise DatasetError(f"{file} names no class: write one class name per line", path=file)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DatasetError(f"{file} names {repeated} more than once", path=file)
    if len(names) > IGNORE_INDEX:
        raise DatasetError(
            f"{file} names {len(names)} classes; masks hold at most {IGNORE_INDEX} "
            f"(value {IGNORE_INDEX} marks ignored pixels)",
            path=file,
        )
    return names


def _check_pair(image: Path, mask: Path) -> MaskPair:
    if not mask.is_file():
        raise DatasetError(f"{image} has no mask: expected {mask}", path=image)
    with open_image(image) as handle:
        image_size = handle.size
    with open_image(mask) as handle:
        mode, mask_size = handle.mode, handle.size
    if mode not in MASK_MODES:
        raise DatasetError(
            f"{mask} is a {mode} image; masks are palette (P) or greyscale (L, I;16) PNGs "
            "whose pixel values are class indices (convert colour masks to indices first)",
            path=mask,
        )
    if mask_size != image_size:
        raise DatasetError(
            f"{mask} is {mask_size[0]}x{mask_size[1]} but its image {image} is "
            f"{image_size[0]}x{image_size[1]}; a mask must have its image's size",
            path=mask,
        )
    return MaskPair(image, mask)


def _paired(images: Path, masks: Path) -> list[MaskPair]:
    found = list_images(images)
    if not found:
        raise DatasetError(f"{images} holds no image", path=images)
    return [
        _check_pair(path, masks / path.relative_to(images).with_suffix(".png")) for path in found
    ]


def _mask_folders(root: Path) -> Splits | None:
    top = root / CLASSES_FILE
    if (root / "images").is_dir() and (root / "masks").is_dir():
        split = None
        pairs = _paired(root / "images", root / "masks")
    elif (root / "train" / "images").is_dir():
        held = next((root / s for s in ("val", "test") if (root / s / "images").is_dir()), None)
        pairs = _paired(root / "train" / "images", root / "train" / "masks")
        split = None if held is None else _paired(held / "images", held / "masks")
    else:
        return None
    if not top.is_file():
        raise DatasetError(
            f"{root} has image and mask folders but no {CLASSES_FILE}: write the class names "
            "there, one per line, line i naming mask value i",
            path=root,
        )
    return pairs, split, read_classes(top)


def _voc(root: Path) -> Splits | None:
    images, masks = root / "JPEGImages", root / "SegmentationClass"
    if not masks.is_dir():
        return None
    lists = root / "ImageSets" / "Segmentation"

    def listed(name: str) -> list[MaskPair]:
        stems = (lists / f"{name}.txt").read_text(encoding="utf-8").split()
        return [_check_pair(images / f"{s}.jpg", masks / f"{s}.png") for s in stems]

    custom = root / CLASSES_FILE
    names = read_classes(custom) if custom.is_file() else list(VOC_CLASS_NAMES)
    if (lists / "train.txt").is_file() and (lists / "val.txt").is_file():
        return listed("train"), listed("val"), names
    pairs = [
        _check_pair(next(iter(sorted(images.glob(f"{m.stem}.*"))), images / f"{m.stem}.jpg"), m)
        for m in sorted(masks.glob("*.png"))
    ]
    return pairs, None, names


def _cityscapes(root: Path) -> Splits | None:
    images, labels = root / "leftImg8bit", root / "gtFine"
    if not (images.is_dir() and labels.is_dir()):
        return None

    def split(name: str) -> list[MaskPair]:
        pairs = []
        for image in sorted((images / name).glob("*/*_leftImg8bit.png")):
            stem = image.name[: -len("_leftImg8bit.png")]
            mask = labels / name / image.parent.name / f"{stem}_gtFine_labelTrainIds.png"
            if not mask.is_file() and mask.with_name(f"{stem}_gtFine_labelIds.png").is_file():
                raise DatasetError(
                    f"{mask} is missing but labelIds masks exist: run cityscapesScripts' "
                    "createTrainIdLabelImgs to write the labelTrainIds masks (19 classes)",
                    path=mask,
                )
            pairs.append(_check_pair(image, mask))
        if not pairs:
            raise DatasetError(f"{images / name} holds no *_leftImg8bit.png image")
        return pairs

    return split("train"), split("val"), list(CITYSCAPES_CLASSES)


def read_mask_folders(root: Path, labels: Sequence[str] = ()) -> Splits:
    """``(train, val or None, class names)`` of a segmentation folder in any layout above.

    ``labels`` (a trained model's classes) must equal the data's class names when given.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder", path=root)
    found = _mask_folders(root) or _voc(root) or _cityscapes(root)
    if found is None:
        raise DatasetError(
            f"{root} is not segmentation data: expected images/ and masks/ folders (at the "
            "top or in train/ and val/) with classes.txt, a Pascal VOC folder "
            "(JPEGImages/, SegmentationClass/), a Cityscapes folder (leftImg8bit/, gtFine/), "
            "or builtin:shapes",
            path=root,
        )
    train, val, names = found
    if labels and list(labels) != names:
        raise DatasetError(
            f"{root} has classes {names} but the model was trained on {list(labels)}; "
            "masks must use the model's class indices",
            path=root,
        )
    return train, val, names
