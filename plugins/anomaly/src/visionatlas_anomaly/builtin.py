"""``builtin:NAME`` data sets: the synthetic categories, written on first use.

Each of the synthetic benchmark's categories (:mod:`visionatlas_anomaly.synthetic`) can be
trained on by name, with no download: ``builtin:stripes`` is written to
``<cache>/anomaly/stripes/`` in the MVTec AD layout (``train/good``, ``validation/good``,
``test/<defect>``, ``ground_truth/<defect>``) at 128x128 with the benchmark's default split
sizes and seed 0, so every run sees the same images. The folder is written atomically: a
first use killed half way leaves nothing behind.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from visionatlas.training.images import (
    dataset_cache_dir,
    read_dataset_manifest,
    write_dataset_manifest,
    written_atomically,
)
from visionatlas_anomaly.synthetic import CATEGORIES, DEFECTS, SplitSizes, generate_dataset

__all__ = ["BUILTIN_DATASETS", "synthetic_category"]

FOLDER = "anomaly"
VERSION = 1
IMAGE_SIZE = 128
SEED = 0
SIZES = SplitSizes()

BUILTIN_DATASETS: dict[str, str] = {
    name: (
        f"synthetic {category.kind} '{name}' in the MVTec AD layout, {IMAGE_SIZE}x{IMAGE_SIZE}: "
        f"{SIZES.train} train, {SIZES.validation} validation and "
        f"{SIZES.test_good + SIZES.test_per_defect * len(DEFECTS)} test images with masks"
    )
    for name, category in CATEGORIES.items()
}
"""``builtin:NAME`` names (the synthetic categories) and a line describing each."""


def synthetic_category(name: str, cache_dir: Path | None = None) -> Path:
    """The category folder of the synthetic category ``name``, written on first use.

    ``cache_dir`` as in :func:`visionatlas.training.images.dataset_cache_dir`.
    """
    if name not in CATEGORIES:
        raise ValueError(f"unknown synthetic category {name!r}; known: {', '.join(CATEGORIES)}")
    target = dataset_cache_dir(cache_dir) / FOLDER / name
    return written_atomically(target, lambda folder: _write(folder, name), complete=_complete)


def _expected(split: str, defect: str) -> int:
    if split == "train":
        return SIZES.train
    if split == "validation":
        return SIZES.validation
    return SIZES.test_good if defect == "good" else SIZES.test_per_defect


def _plan() -> list[tuple[str, str]]:
    return [("train", "good"), ("validation", "good"), ("test", "good")] + [
        ("test", defect) for defect in DEFECTS
    ]


def _write(folder: Path, name: str) -> None:
    generate_dataset(folder, [name], sizes=SIZES, image_size=IMAGE_SIZE, seed=SEED)
    written = folder / name
    for child in written.iterdir():  # the category's own folders go to the top
        child.rename(folder / child.name)
    shutil.rmtree(written)
    manifest = {
        "name": name,
        "version": VERSION,
        "source": "visionatlas_anomaly.synthetic.generate_dataset",
        "image_size": IMAGE_SIZE,
        "seed": SEED,
        "counts": {f"{split}/{defect}": _expected(split, defect) for split, defect in _plan()},
    }
    write_dataset_manifest(folder, manifest)


def _complete(folder: Path) -> bool:
    """The manifest is there, of this version, and every split holds its images."""
    if read_dataset_manifest(folder, VERSION) is None:
        return False
    for split, defect in _plan():
        count = len(list((folder / split / defect).glob("*.png")))
        if count != _expected(split, defect):
            return False
        if defect != "good" and len(list((folder / "ground_truth" / defect).glob("*.png"))) != (
            count
        ):
            return False
    return True
