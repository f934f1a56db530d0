"""``builtin:digits`` for regression: scikit-learn's handwritten digits with numeric targets.

The 1797 8x8 digit images bundled with scikit-learn (no download), written on first use to
``<cache>/digits-regression/`` as 32x32 PNGs with ``train.csv`` and ``val.csv`` (a fixed
80/20 split, stratified by digit, seed 0). Two targets per image: ``value``, the digit
(0-9) as a number, and ``ink``, the fraction of the image covered by ink (mean intensity,
0-1). Written atomically: a first use killed half way leaves nothing behind.
"""

from __future__ import annotations

import csv
from pathlib import Path

from visionatlas.training.images import (
    dataset_cache_dir,
    read_dataset_manifest,
    stratified_split,
    write_dataset_manifest,
    written_atomically,
)

__all__ = ["DIGITS_DESCRIPTION", "digits_folder"]

DIGITS_DESCRIPTION = (
    "scikit-learn's handwritten digits as regression: 1797 images (32x32 PNGs), targets "
    "value (the digit, 0-9) and ink (mean intensity, 0-1), fixed 80/20 train/val split"
)
FOLDER = "digits-regression"
VERSION = 1
PIXELS = 32
VAL_FRACTION = 0.2
SPLIT_SEED = 0
COLUMNS = ("path", "value", "ink")


def digits_folder(cache_dir: Path | None = None) -> Path:
    """The folder (``train.csv``, ``val.csv``, ``images/``), written on first use.

    ``cache_dir`` as in :func:`visionatlas.training.images.dataset_cache_dir`.
    """
    return written_atomically(dataset_cache_dir(cache_dir) / FOLDER, _write, complete=_complete)


def _write(folder: Path) -> None:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.asarray(data.images, dtype=np.float64) / 16.0  # (1797, 8, 8) in [0, 1]
    digits = [int(t) for t in data.target]
    (folder / "images").mkdir()
    for index, image in enumerate(images):
        pixels = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
        big = Image.fromarray(pixels).resize((PIXELS, PIXELS), Image.Resampling.BILINEAR)
        big.save(folder / "images" / f"{index:04d}.png")
    train_idx, val_idx = stratified_split(digits, VAL_FRACTION, SPLIT_SEED)
    counts: dict[str, int] = {}
    for split, indices in (("train", train_idx), ("val", val_idx)):
        with (folder / f"{split}.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            for index in indices:
                ink = float(images[index].mean())
                writer.writerow([f"images/{index:04d}.png", digits[index], f"{ink:.6f}"])
        counts[split] = len(indices)
    manifest = {
        "name": "digits-regression",
        "version": VERSION,
        "source": "sklearn.datasets.load_digits",
        "targets": list(COLUMNS[1:]),
        "counts": counts,
        "split": {"val_fraction": VAL_FRACTION, "seed": SPLIT_SEED, "stratified_by": "digit"},
    }
    write_dataset_manifest(folder, manifest)


def _complete(folder: Path) -> bool:
    """The manifest is there, of this version, and the CSVs and images are all present."""
    manifest = read_dataset_manifest(folder, VERSION)
    counts = None if manifest is None else manifest["counts"]
    if counts is None or set(counts) != {"train", "val"}:
        return False
    try:
        rows = {
            split: (folder / f"{split}.csv").read_text(encoding="utf-8").count("\n") - 1
            for split in counts
        }
    except OSError:
        return False
    images = len(list((folder / "images").glob("*.png")))
    return rows == counts and images == sum(counts.values())
