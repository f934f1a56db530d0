"""Generic helpers for image datasets: safe opening, scanning, transforms, splits, caching.

Task plugins build their training data readers from these pieces; nothing here knows a
task. It imports torch (:class:`ImageFiles` is a torch ``Dataset``); torchvision, PIL and
platformdirs are imported inside the functions that need them.

- :func:`open_image` opens an image and refuses decompression bombs;
  :func:`check_image` decodes just enough of a file to tell that it is readable, and
  :func:`scan_images` skips (with a :class:`SkippedImageWarning`) or refuses the ones
  that are not.
- :class:`ImageFiles` is a map-style dataset of ``(image, target)`` pairs: the image is a
  ``(3, H, W)`` float tensor produced by a :func:`image_transform` preset.
- :func:`stratified_split` draws a seeded validation split; :func:`written_atomically`
  writes a built-in dataset to its cache folder so that an interrupted first use never
  leaves half of it behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from torch.utils.data import Dataset

from visionatlas.errors import DatasetError, ImageReadError, ImageTooLargeError, close_matches
from visionatlas.training.protocol import SkippedFile

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage
    from torch import Tensor

__all__ = [
    "AUGMENT_PRESETS",
    "BUILTIN_PREFIX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_SUFFIXES",
    "MAX_SKIP_WARNINGS",
    "ImageFiles",
    "SkippedImageWarning",
    "augment_steps",
    "builtin_name",
    "check_image",
    "dataset_cache_dir",
    "image_transform",
    "list_images",
    "open_image",
    "read_rgb",
    "scan_images",
    "stratified_split",
    "written_atomically",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
"""File name endings read as images (case-insensitive)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

AUGMENT_PRESETS: dict[str, str] = {
    "default": "random resized crop (scale 0.5-1) and horizontal flip",
    "light": "small random shifts, rotations and zoom, no flip (for digits, text, "
    "anything whose mirror image means something else)",
    "none": "no augmentation: the evaluation transform (resize, center crop)",
}
"""Training augmentation presets of :func:`image_transform`, with what each does."""

CACHE_ENV = "VISIONATLAS_CACHE_DIR"
MAX_SKIP_WARNINGS = 20
"""Unreadable images named one warning each by :func:`scan_images`; the rest are counted."""
BUILTIN_PREFIX = "builtin:"

T = TypeVar("T")


class SkippedImageWarning(UserWarning):
    """An unreadable or truncated image was left out of a dataset."""


@contextlib.contextmanager
def open_image(path: Path) -> Iterator[PILImage]:
    """``PIL.Image.open(path)`` with its errors as :class:`~visionatlas.ImageReadError`.

    Images over ``PIL.Image.MAX_IMAGE_PIXELS`` raise :class:`~visionatlas.ImageTooLargeError`
    before any pixel is decoded (PIL only warns between one and two times the limit; that is
    refused too). Decoding errors inside the block (truncated or corrupt pixel data) become
    :class:`~visionatlas.ImageReadError` naming ``path`` as well.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            handle = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        found = re.search(r"\((\d+) pixels\)", str(err))  # PIL: "Image size (N pixels) ..."
        pixels = int(found.group(1)) if found else None
        raise ImageTooLargeError(path, pixels, Image.MAX_IMAGE_PIXELS or 0) from err
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise ImageReadError(path, str(err) or type(err).__name__) from err
    with handle:
        try:
            yield handle
        except (OSError, UnidentifiedImageError, SyntaxError) as err:  # truncated or corrupt
            raise ImageReadError(path, str(err) or type(err).__name__) from err


def check_image(path: Path) -> None:
    """Raise :class:`~visionatlas.ImageReadError` if ``path`` is not a readable image.

    Cheap: PIL's ``verify()`` (checks PNG chunk checksums and truncation without decoding),
    plus, for JPEG, whose ``verify()`` checks nothing, a decode at 1/8 scale, which still
    reads every byte of the entropy-coded data and so finds truncated files.
    """
    with open_image(path) as handle:
        image_format = handle.format
        handle.verify()
    if image_format == "JPEG":
        with open_image(path) as handle:
            handle.draft("RGB", (1, 1))
            handle.load()


def read_rgb(path: Path) -> PILImage:
    """The image at ``path`` decoded and converted to RGB (safe against decompression bombs)."""
    with open_image(path) as handle:
        return handle.convert("RGB")


def list_images(folder: Path, *, recursive: bool = True) -> list[Path]:
    """Image files (:data:`IMAGE_SUFFIXES`) in ``folder``, sorted; hidden files are ignored."""
    pattern = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p
        for p in pattern
        if p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and p.is_file()
    )


def scan_images(
    paths: Sequence[Path], *, strict: bool = False
) -> tuple[list[Path], list[SkippedFile]]:
    """Split ``paths`` into readable images and skipped ones (see :func:`check_image`).

    Each unreadable file is reported with a :class:`SkippedImageWarning` naming it (after
    :data:`MAX_SKIP_WARNINGS` of them, one more warning gives the count of the rest), or,
    with ``strict=True``, raises its :class:`~visionatlas.ImageReadError` (naming the file).
    """
    good: list[Path] = []
    skipped: list[SkippedFile] = []
    for path in paths:
        try:
            check_image(path)
        except ImageReadError as err:
            if strict:
                raise
            skipped.append(SkippedFile(path=path, reason=err.reason))
            if len(skipped) <= MAX_SKIP_WARNINGS:
                warnings.warn(
                    f"skipping unreadable image {path}: {err.reason} (strict mode refuses it "
                    "instead)",
                    SkippedImageWarning,
                    stacklevel=2,
                )
            continue
        good.append(path)
    if len(skipped) > MAX_SKIP_WARNINGS:
        warnings.warn(
            f"skipping {len(skipped) - MAX_SKIP_WARNINGS} more unreadable images "
            f"({len(skipped)} in all; every one is listed in the skipped files)",
            SkippedImageWarning,
            stacklevel=2,
        )
    return good, skipped


def image_transform(
    input_size: tuple[int, int], *, train: bool, augment: str = "default"
) -> Callable[[Any], Tensor]:
    """A ``torchvision.transforms.v2`` pipeline: a PIL image to a normalized float tensor.

    Evaluation (and ``augment="none"``): resize the shorter side to ``max(input_size)``, then
    crop the center to ``input_size``. Training presets (:data:`AUGMENT_PRESETS`) add random
    crops, flips or shifts. Output: ``(3, H, W)`` float32 normalized with the ImageNet mean
    and standard deviation.
    """
    import torch
    from torchvision.transforms import v2

    if augment not in AUGMENT_PRESETS:
        accepted = ", ".join(AUGMENT_PRESETS)
        raise ValueError(f"augment={augment!r} is not a preset; accepted: {accepted}")
    height, width = _size(input_size)
    size = (height, width)
    resize: list[Any] = [v2.Resize(max(size), antialias=True), v2.CenterCrop(size)]
    steps: list[Any] = [v2.ToImage()]
    if not train or augment == "none":
        steps += resize
    elif augment == "default":
        steps += [
            v2.RandomResizedCrop(size, scale=(0.5, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
        ]
    else:  # light
        steps += [
            *resize,
            v2.RandomAffine(degrees=10.0, translate=(0.1, 0.1), scale=(0.9, 1.1)),
        ]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return v2.Compose(steps)


def _size(input_size: object) -> tuple[int, int]:
    if (
        isinstance(input_size, (tuple, list))
        and len(input_size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in input_size)
    ):
        return int(input_size[0]), int(input_size[1])
    raise ValueError(f"input_size must be (height, width) positive integers, got {input_size!r}")


class ImageFiles(Dataset[tuple[Any, T]]):
    """A map-style dataset of ``(image, target)``: ``paths[i]`` read and transformed.

    ``transform`` receives the RGB PIL image (see :func:`image_transform`); without one the
    item is the PIL image itself. A file that fails to read raises
    :class:`~visionatlas.ImageReadError` naming it (scan with :func:`scan_images` first to
    skip such files before training).
    """

    def __init__(
        self,
        paths: Sequence[Path],
        targets: Sequence[T],
        transform: Callable[[Any], Any] | None = None,
    ) -> None:
        if len(paths) != len(targets):
            raise ValueError(f"{len(paths)} paths but {len(targets)} targets; give one per path")
        self.paths = list(paths)
        self.targets = list(targets)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Any, T]:
        image = read_rgb(self.paths[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]

    def __repr__(self) -> str:
        return f"ImageFiles({len(self)} images)"


def stratified_split(
    groups: Sequence[Hashable], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Indices ``(train, val)``: ``fraction`` of each group, drawn with ``seed``, held out.

    Every group with at least two members keeps at least one in each split; a group of one
    stays in training. Pass the same value for every item for a plain random split. Both
    lists are sorted.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {fraction!r}")
    members: dict[Hashable, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    rng = random.Random(seed)
    train: list[int] = []
    val: list[int] = []
    for indices in members.values():
        shuffled = list(indices)
        rng.shuffle(shuffled)
        count = len(shuffled)
        held = 0 if count < 2 else min(count - 1, max(1, round(count * fraction)))
        val += shuffled[:held]
        train += shuffled[held:]
    return sorted(train), sorted(val)


def dataset_cache_dir(cache_dir: Path | None = None) -> Path:
    """Where built-in datasets are written: ``cache_dir``, else ``$VISIONATLAS_CACHE_DIR``,
    else the user cache folder's ``visionatlas/datasets``."""
    if cache_dir is not None:
        return Path(cache_dir)
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    import platformdirs

    return platformdirs.user_cache_path("visionatlas", appauthor=False) / "datasets"


DATASET_MANIFEST = "dataset.json"
"""The file that describes a built-in dataset folder (written last, read first)."""


def write_dataset_manifest(folder: Path, manifest: Mapping[str, Any]) -> None:
    """Write a built-in dataset's manifest (its name, ``version``, ``counts``...)."""
    text = json.dumps(dict(manifest), indent=2) + "\n"
    (folder / DATASET_MANIFEST).write_text(text, encoding="utf-8")


def read_dataset_manifest(folder: Path, version: int) -> dict[str, Any] | None:
    """The manifest of a built-in dataset folder if it is readable, of ``version`` and has
    a ``counts`` mapping; ``None`` otherwise (the folder is then written again)."""
    try:
        manifest = json.loads((folder / DATASET_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("version") != version:
        return None
    return manifest if isinstance(manifest.get("counts"), dict) else None


def written_atomically(
    target: Path, write: Callable[[Path], None], *, complete: Callable[[Path], bool]
) -> Path:
    """``target`` as a complete folder, written by ``write(folder)`` if it is not yet.

    ``write`` fills a temporary folder beside ``target``, which is then renamed to
    ``target`` in one step, so a process killed while writing never leaves a partial
    dataset. ``complete(target)`` says whether an existing folder is whole; one that is not
    (edited by hand) is replaced. Concurrent first uses (several training processes) each
    write, and the first rename wins.
    """
    target = Path(target)
    if target.is_dir() and complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write(scratch)
        if not complete(scratch):
            raise RuntimeError(f"writing {target} produced an incomplete dataset")
        if target.exists() and not complete(target):
            stale = Path(tempfile.mkdtemp(prefix=f".{target.name}-stale-", dir=target.parent))
            with contextlib.suppress(OSError):
                target.rename(stale / target.name)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            scratch.rename(target)
        except OSError:
            if not (target.is_dir() and complete(target)):  # not another process's copy
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def builtin_name(source: str, available: Mapping[str, str], task: str) -> str | None:
    """``NAME`` of a ``builtin:NAME`` data source, ``None`` for anything else (a path).

    An unknown name raises :class:`~visionatlas.DatasetError` listing the available ones
    (``available`` maps names to descriptions) and close matches.
    """
    if not source.startswith(BUILTIN_PREFIX):
        return None
    name = source[len(BUILTIN_PREFIX) :]
    if name in available:
        return name
    close = close_matches(name, available)
    hint = f"; did you mean {', '.join(BUILTIN_PREFIX + c for c in close)}?" if close else ""
    names = ", ".join(BUILTIN_PREFIX + n for n in available) or "none"
    raise DatasetError(f"unknown built-in dataset {source!r} for {task}{hint} (available: {names})")


def augment_steps(
    augment: str, steps: Mapping[str, str], presets: Mapping[str, Sequence[str]]
) -> tuple[str, ...]:
    """The augmentation steps an ``augment`` setting names, in the order of ``steps``.

    ``augment`` is a preset name (``presets`` maps each to its steps; ``"none"`` always
    means no step) or a comma-separated list of step names from ``steps`` (which maps each
    to what it does), e.g. ``"flip,colour"``. Anything else raises a ``ValueError`` that
    lists what is accepted.
    """
    if augment == "none":
        return ()
    if augment in presets:
        chosen = set(presets[augment])
    else:
        chosen = {part.strip() for part in augment.split(",") if part.strip()}
        unknown = sorted(chosen - set(steps))
        if unknown or not chosen:
            accepted = ", ".join(
                [*(f"{name} ({', '.join(presets[name])})" for name in presets), "none"]
            )
            raise ValueError(
                f"augment={augment!r} names no preset and unknown steps {unknown}; accepted: "
                f"a preset ({accepted}) or a comma-separated list of steps "
                f"({', '.join(f'{k}: {v}' for k, v in steps.items())})"
            )
    return tuple(name for name in steps if name in chosen)
