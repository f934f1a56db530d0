"""DOTA folders: ``images/`` and ``labelTxt/<image stem>.txt``, one object per line.

An object line is ``x1 y1 x2 y2 x3 y3 x4 y4 class_name [difficult]``: the four corners of
its polygon in pixels, its class and, optionally, ``0`` or ``1`` for difficult (default
``0``). The header lines ``imagesource:...`` and ``gsd:...`` and blank lines are skipped.
Images without a label file, or with an empty one, are negatives. The class list is a
trained model's (``labels``), else that of ``classes.txt`` (one name a line) in the folder
or, for a split folder such as ``train/``, in its parent, else the sorted names found.

Everything is checked before training starts, and refused naming the file, the line and
what is accepted: a line that is not 8 numbers and a class (and a difficulty), a polygon
that is not 4 points or is degenerate or self-intersecting, an unknown class, a difficulty
other than 0 or 1, a label file whose image is missing and a corner more than
:data:`POINT_SLACK` pixels outside its image. Corners within the slack are kept as they
are, never clipped: the boxes are the min-area rectangles of the polygons as written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from visionatlas.errors import DatasetError
from visionatlas_detection.training import BACKGROUND
from visionatlas_oriented.data.samples import OrientedRecord

__all__ = ["CLASSES_FILE", "LINE_FORMAT", "POINT_SLACK", "read_dota"]

POINT_SLACK = 2.0
"""How far (pixels) a corner may lie outside its image (DOTA has corners a pixel or two
past the edge); it is kept as written. Anything further is an error."""

CLASSES_FILE = "classes.txt"
LINE_FORMAT = "x1 y1 x2 y2 x3 y3 x4 y4 class_name [difficult]"
"""An object line: 4 corners (pixels), the class and optionally difficult (0 or 1)."""

_HEADERS = ("imagesource:", "gsd:")
_SHOWN = 5

_Object = tuple[np.ndarray, str, bool, int]
"""Corners ``(4, 2)``, class name, difficult, line number."""


def _number(token: str) -> float | None:
    try:
        return float(token)
    except ValueError:
        return None


def _parse_line(line: str, where: str) -> tuple[np.ndarray, str, bool]:
    tokens = line.split()
    numbers = [_number(t) for t in tokens[:8]]
    if len(tokens) in (9, 10) and all(n is not None for n in numbers):
        name = tokens[8]
        flag = tokens[9] if len(tokens) == 10 else "0"
        if flag not in ("0", "1"):
            raise DatasetError(
                f"{where}: difficult is {flag!r}; it must be 0 or 1 (or left out, meaning 0)"
            )
        points = np.array(numbers, dtype=np.float64).reshape(4, 2)
        return points, name, flag == "1"
    leading = next((i for i, t in enumerate(tokens) if _number(t) is None), len(tokens))
    if leading % 2 == 0 and leading >= 2 and leading != 8 and len(tokens) - leading in (1, 2):
        raise DatasetError(
            f"{where}: a polygon of {leading // 2} points ({leading} numbers); DOTA objects "
            f"are 4 points: accepted is {LINE_FORMAT!r}"
        )
    raise DatasetError(f"{where}: {line.strip()[:80]!r} is not an object line; accepted is "
                       f"{LINE_FORMAT!r} (8 numbers, a class name, optionally 0 or 1)")  # fmt: skip


def _parse_file(path: Path) -> list[_Object]:
    from visionatlas_oriented.boxes import polygon_problem

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path} is not a text file: {err}", path=path) from err
    objects = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.lower().startswith(_HEADERS):
            continue
        where = f"{path}, line {number}"
        points, name, difficult = _parse_line(stripped, where)
        problem = polygon_problem(points)
        if problem is not None:
            raise DatasetError(
                f"{where}: the polygon {_points(points)} is unusable: {problem}; accepted are "
                "4 corners in order around a quadrilateral of non-zero area whose sides "
                "do not cross",
                path=path,
            )
        objects.append((points, name, difficult, number))
    return objects


def _points(points: np.ndarray) -> str:
    return "(" + ", ".join(f"({x:g}, {y:g})" for x, y in points.tolist()) + ")"


def _read_classes(file: Path) -> list[str]:
    names = [line.strip() for line in file.read_text(encoding="utf-8").splitlines()]
    names = [n for n in names if n]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    spaced = [n for n in names if len(n.split()) > 1]
    if duplicates or spaced or not names:
        raise DatasetError(
            f"{file} must list class names, one a line, each once and without spaces "
            f"(repeated: {duplicates}, with spaces: {spaced})",
            path=file,
        )
    return names


def _images(folder: Path) -> dict[str, Path]:
    from visionatlas.training.images import list_images

    found: dict[str, Path] = {}
    for path in list_images(folder, recursive=False):
        if path.stem in found:
            raise DatasetError(
                f"{folder} has two images named {path.stem!r} ({found[path.stem].name} and "
                f"{path.name}); a label file names its image by stem, so stems must differ",
                path=path,
            )
        found[path.stem] = path
    return found


def _size(path: Path) -> tuple[int, int]:
    from visionatlas.training.images import open_image

    with open_image(path) as handle:  # reads the header only
        width, height = handle.size
    return int(width), int(height)


def _check_inside(objects: list[_Object], width: int, height: int, file: Path) -> None:
    for points, _, _, number in objects:
        xs, ys = points[:, 0], points[:, 1]
        if (
            xs.min() < -POINT_SLACK
            or ys.min() < -POINT_SLACK
            or xs.max() > width + POINT_SLACK
            or ys.max() > height + POINT_SLACK
        ):
            raise DatasetError(
                f"{file}, line {number}: the polygon {_points(points)} reaches outside its "
                f"{width}x{height} image; corners must lie within the image, at most "
                f"{POINT_SLACK:g} px past its edges (x in [0, {width}], y in [0, {height}])",
                path=file,
            )


def _class_names(
    root: Path, labels: Sequence[str], parsed: dict[Path, list[_Object]]
) -> tuple[list[str], str]:
    known = [name for name in labels if name != BACKGROUND]
    if known:
        return known, "the model's classes"
    for listing in (root / CLASSES_FILE, root.parent / CLASSES_FILE):
        if listing.is_file():
            return _read_classes(listing), f"the classes of {listing}"
    found = {name for objects in parsed.values() for _, name, _, _ in objects}
    return sorted(found), "the classes found"


def read_dota(
    root: str | Path, *, labels: Sequence[str] = ()
) -> tuple[list[OrientedRecord], list[str]]:
    """The images of a DOTA folder (sorted by name) and the class names.

    ``labels`` (a trained model's classes; a leading ``"__background__"`` is dropped) fixes
    the class list and its order; otherwise it is ``classes.txt``'s or the sorted names found.
    """
    base = Path(root)
    image_dir, label_dir = base / "images", base / "labelTxt"
    if not image_dir.is_dir():
        raise DatasetError(
            f"{base} is not a DOTA folder: it needs images/ (the images) and labelTxt/ (one "
            f"<image stem>.txt per image, lines {LINE_FORMAT!r})",
            path=base,
        )
    images = _images(image_dir)
    label_files = sorted(label_dir.glob("*.txt")) if label_dir.is_dir() else []
    orphans = [f.name for f in label_files if f.stem not in images]
    if orphans:
        more = f" and {len(orphans) - _SHOWN} more" if len(orphans) > _SHOWN else ""
        raise DatasetError(
            f"{label_dir} has label files whose image {image_dir} lacks: "
            f"{', '.join(orphans[:_SHOWN])}{more} (each labelTxt/<stem>.txt needs an image "
            "images/<stem> with an image suffix)",
            path=label_dir / orphans[0],
        )
    parsed = {f: _parse_file(f) for f in label_files}
    names, source = _class_names(base, labels, parsed)
    for file, objects in parsed.items():
        for _, name, _, number in objects:
            if name not in names:
                raise DatasetError(
                    f"{file}, line {number}: class {name!r} is not one of {source}: "
                    f"{', '.join(names)}",
                    path=file,
                )
    by_stem = {f.stem: objects for f, objects in parsed.items()}
    records = []
    for stem, image in sorted(images.items(), key=lambda item: item[1].name):
        width, height = _size(image)
        objects = by_stem.get(stem, [])
        _check_inside(objects, width, height, label_dir / f"{stem}.txt")
        corners = np.array([o[0] for o in objects], dtype=np.float32).reshape(-1, 4, 2)
        records.append(
            OrientedRecord(
                image=image,
                width=width,
                height=height,
                corners=corners,
                classes=tuple(o[1] for o in objects),
                difficult=np.array([o[2] for o in objects], dtype=bool),
            )
        )
    return records, names
