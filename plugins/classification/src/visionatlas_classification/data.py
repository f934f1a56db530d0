"""Reading classification data in the ImageFolder layout (a folder per class).

Two layouts are read:

- split folders: ``DATA/train/<class>/*.png`` and ``DATA/val/<class>/*.png``, optionally
  ``DATA/test/<class>/...``; without ``val/``, a seeded stratified fraction of ``train/``
  is held out;
- class folders: ``DATA/<class>/*.png``, split by a seeded stratified fraction.

Images may sit in sub-folders of a class folder. Class names are the folder names, sorted.
For evaluation the held-out split is ``test/``, else ``val/``, else the whole folder of class
folders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from visionatlas.errors import DatasetError
from visionatlas.training.images import (
    IMAGE_SUFFIXES,
    ImageFiles,
    image_transform,
    list_images,
    scan_images,
    stratified_split,
)
from visionatlas.training.protocol import DataRequest, SkippedFile, TrainingData

__all__ = ["ClassFolder", "read_class_folders", "read_image_folder"]

SPLITS = ("train", "val", "test")
_LAYOUT = (
    "expected the ImageFolder layout DATA/train/<class>/*.png and DATA/val/<class>/*.png "
    "(optionally DATA/test/<class>/...), or DATA/<class>/*.png split by val_fraction"
)


@dataclass
class ClassFolder:
    """The images of one split, by class: ``files[class_name]`` sorted paths."""

    root: Path
    files: dict[str, list[Path]]
    skipped: list[SkippedFile]

    @property
    def classes(self) -> list[str]:
        return sorted(self.files)


def read_class_folders(root: Path, *, strict: bool = False) -> ClassFolder:
    """The class folders of ``root`` and their readable images.

    Raises :class:`~visionatlas.DatasetError` naming the folder if ``root`` holds no class
    folder, or a class folder holds no (readable) image; unreadable images are skipped with
    a warning (or refused with ``strict=True``).
    """
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        loose = list_images(root, recursive=False)
        found = f" (it holds {len(loose)} loose images)" if loose else ""
        raise DatasetError(f"{root} holds no class folders{found}; {_LAYOUT}", path=root)
    files: dict[str, list[Path]] = {}
    skipped: list[SkippedFile] = []
    for folder in folders:
        images = list_images(folder)
        if not images:
            raise DatasetError(
                f"class folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)} are "
                "read); remove it or add images",
                path=folder,
            )
        good, bad = scan_images(images, strict=strict)
        if not good:
            raise DatasetError(
                f"class folder {folder} holds no readable image ({len(bad)} unreadable, "
                f"first: {bad[0].path.name}: {bad[0].reason})",
                path=folder,
            )
        files[folder.name] = good
        skipped += bad
    return ClassFolder(root=root, files=files, skipped=skipped)


def _class_indices(found: Sequence[str], labels: Sequence[str], where: Path) -> dict[str, int]:
    """Each found class's output index: its position in ``labels`` (else in ``found``)."""
    if not labels:
        return {name: index for index, name in enumerate(sorted(found))}
    unknown = sorted(set(found) - set(labels))
    if unknown:
        raise DatasetError(
            f"{where} has class folders the model does not know: {', '.join(unknown)}; "
            f"the model's classes are {', '.join(labels)}",
            path=where,
        )
    return {name: index for index, name in enumerate(labels)}


def _items(
    folder: ClassFolder, indices: dict[str, int], select: Sequence[int] | None = None
) -> tuple[list[Path], list[int]]:
    paths = [p for name in folder.classes for p in folder.files[name]]
    targets = [indices[name] for name in folder.classes for _ in folder.files[name]]
    if select is None:
        return paths, targets
    return [paths[i] for i in select], [targets[i] for i in select]


def _split_dirs(root: Path) -> dict[str, Path]:
    return {name: root / name for name in SPLITS if (root / name).is_dir()}


def read_image_folder(
    root: Path, request: DataRequest, *, augment: str | None = None
) -> TrainingData:
    """``root`` (either layout) as :class:`~visionatlas.training.protocol.TrainingData`.

    Items are ``(image, class_index)``: a ``(3, H, W)`` float tensor at
    ``request.input_size`` and an ``int``. ``augment`` overrides ``request.augment``.
    """
    if not root.exists():
        raise DatasetError(f"dataset folder {root} does not exist; {_LAYOUT}", path=root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder; {_LAYOUT}", path=root)
    preset = augment if augment is not None else request.augment
    train_transform = image_transform(request.input_size, train=True, augment=preset)
    eval_transform = image_transform(request.input_size, train=False)
    splits = _split_dirs(root)
    labels = list(request.labels)

    if request.purpose == "evaluate":
        name = "test" if "test" in splits else "val" if "val" in splits else None
        if name is None and "train" in splits:
            raise DatasetError(
                f"{root} has a train/ folder but neither test/ nor val/ to evaluate on; "
                "add one, or pass a folder of class folders",
                path=root,
            )
        where = splits[name] if name is not None else root
        held = read_class_folders(where, strict=request.strict)
        indices = _class_indices(held.classes, labels, where)
        paths, targets = _items(held, indices)
        names = labels or held.classes
        return TrainingData(
            train=None,
            val=ImageFiles(paths, targets, eval_transform),
            num_outputs=len(names),
            labels=names,
            skipped=held.skipped,
            source=str(root),
            description=f"{where}: {len(paths)} images in {len(held.classes)} classes",
        )

    if splits and "train" not in splits:
        present = ", ".join(f"{name}/" for name in splits)
        raise DatasetError(f"{root} has {present} but no train/ folder; {_LAYOUT}", path=root)
    train_root = splits.get("train", root)
    train = read_class_folders(train_root, strict=request.strict)
    _check_class_count(train, train_root)
    indices = _class_indices(train.classes, labels, train_root)
    names = labels or train.classes
    skipped = list(train.skipped)
    if "val" in splits:
        val = read_class_folders(splits["val"], strict=request.strict)
        _check_same_classes(train, val)
        skipped += val.skipped
        train_items = _items(train, indices)
        val_items = _items(val, indices)
        how = "val/ folder"
    else:
        _, all_targets = _items(train, indices)
        train_idx, val_idx = stratified_split(all_targets, request.val_fraction, request.seed)
        train_items = _items(train, indices, train_idx)
        val_items = _items(train, indices, val_idx)
        how = f"val_fraction={request.val_fraction}, seed={request.seed}"
    return TrainingData(
        train=ImageFiles(*train_items, transform=train_transform),
        val=ImageFiles(*val_items, transform=eval_transform),
        num_outputs=len(names),
        labels=names,
        skipped=skipped,
        source=str(root),
        description=(
            f"{root}: {len(names)} classes, {len(train_items[0])} training and "
            f"{len(val_items[0])} validation images ({how}); augment={preset}"
        ),
    )


def _check_class_count(folder: ClassFolder, where: Path) -> None:
    if len(folder.files) < 2:
        raise DatasetError(
            f"{where} holds one class folder ({folder.classes[0]}); classification needs at "
            f"least two; {_LAYOUT}",
            path=where,
        )


def _check_same_classes(train: ClassFolder, val: ClassFolder) -> None:
    only_train = sorted(set(train.files) - set(val.files))
    only_val = sorted(set(val.files) - set(train.files))
    if only_train or only_val:
        details = []
        if only_train:
            details.append(f"only in {train.root}: {', '.join(only_train)}")
        if only_val:
            details.append(f"only in {val.root}: {', '.join(only_val)}")
        raise DatasetError(
            f"train/ and val/ must hold the same class folders; {'; '.join(details)}",
            path=val.root,
        )
