"""``builtin:digits``: scikit-learn's bundled handwritten digits as an ImageFolder dataset.

1797 grayscale 8x8 digit images in 10 classes (``sklearn.datasets.load_digits``, shipped
with scikit-learn, no download), written on first use to
``<cache>/digits/{train,val}/<digit>/<index>.png`` as 32x32 PNGs, with a fixed stratified
80/20 split (seed 0) so every run sees the same validation images. The folder is written
atomically: a first use killed half way leaves nothing behind, and the next use writes it.
"""

from __future__ import annotations

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
    "scikit-learn's handwritten digits: 1797 8x8 grayscale images (saved as 32x32 PNGs), "
    "10 classes, fixed 80/20 train/val split"
)
FOLDER = "digits"
VERSION = 1
PIXELS = 32
VAL_FRACTION = 0.2
SPLIT_SEED = 0


def digits_folder(cache_dir: Path | None = None) -> Path:
    """The digits dataset folder, written on first use.

    ``cache_dir`` as in :func:`visionatlas.training.images.dataset_cache_dir`.
    """
    return written_atomically(dataset_cache_dir(cache_dir) / FOLDER, _write, complete=_complete)


def _write(folder: Path) -> None:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.asarray(data.images, dtype=np.float64)  # (1797, 8, 8), values 0..16
    targets = [int(t) for t in data.target]
    train_idx, val_idx = stratified_split(targets, VAL_FRACTION, SPLIT_SEED)
    counts: dict[str, int] = {}
    for split, indices in (("train", train_idx), ("val", val_idx)):
        for digit in range(10):
            (folder / split / str(digit)).mkdir(parents=True)
        for index in indices:
            pixels = np.clip(np.rint(images[index] * (255.0 / 16.0)), 0, 255).astype(np.uint8)
            image = Image.fromarray(pixels).resize((PIXELS, PIXELS), Image.Resampling.BILINEAR)
            image.save(folder / split / str(targets[index]) / f"{index:04d}.png")
        counts[split] = len(indices)
    manifest = {
        "name": "digits",
        "version": VERSION,
        "source": "sklearn.datasets.load_digits",
        "classes": [str(d) for d in range(10)],
        "counts": counts,
        "split": {"val_fraction": VAL_FRACTION, "seed": SPLIT_SEED, "stratified": True},
    }
    write_dataset_manifest(folder, manifest)


def _complete(folder: Path) -> bool:
    """The manifest is there, of this version, and every split holds its images."""
    manifest = read_dataset_manifest(folder, VERSION)
    counts = None if manifest is None else manifest["counts"]
    if counts is None or set(counts) != {"train", "val"}:
        return False
    return all(
        len(list((folder / split).glob("*/*.png"))) == expected
        for split, expected in counts.items()
    )
