"""Reading regression data: CSV files of image paths and numeric targets.

A CSV has a header row; its first column is the image path (relative to the CSV's folder,
or absolute), every other column a numeric target::

    path,age,weight
    images/0001.png,31,72.5

``DATA`` is one CSV (split by a seeded ``val_fraction``) or a folder holding ``train.csv``
and optionally ``val.csv`` and ``test.csv``. For evaluation the held-out split is the CSV
itself, or the folder's ``test.csv``, else ``val.csv``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from visionatlas.errors import DatasetError
from visionatlas.training.images import ImageFiles, image_transform, scan_images, stratified_split
from visionatlas.training.protocol import DataRequest, SkippedFile, TrainingData

__all__ = ["TargetTable", "read_csv_data", "read_target_table"]

_LAYOUT = (
    "expected a CSV with a header row, the image path in the first column and numeric "
    "targets in the others (paths relative to the CSV's folder), or a folder holding "
    "train.csv (and optionally val.csv, test.csv)"
)
MAX_PROBLEMS = 5


@dataclass
class TargetTable:
    """The readable rows of one CSV: image paths and their target values."""

    csv: Path
    columns: list[str]
    paths: list[Path]
    targets: list[tuple[float, ...]]
    skipped: list[SkippedFile]


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_target_table(
    csv_path: Path, *, columns: Sequence[str] = (), strict: bool = False
) -> TargetTable:
    """Read ``csv_path``; ``columns`` picks target columns (default: all but the first).

    Raises :class:`~visionatlas.DatasetError` for an empty file, a missing column, rows
    with a missing image file or a non-numeric target (naming the line, column and value;
    up to five problems at once). Unreadable images are skipped with a warning (or refused
    with ``strict=True``).
    """
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            numbered = [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"cannot read CSV {csv_path}: {err}; {_LAYOUT}", path=csv_path) from err
    rows = [row for _, row in numbered]
    if not rows:
        raise DatasetError(f"CSV {csv_path} is empty; {_LAYOUT}", path=csv_path)
    header = [cell.strip() for cell in rows[0]]
    if len(header) < 2:
        raise DatasetError(
            f"CSV {csv_path} has the header {','.join(header)!r}: it needs an image path "
            f"column and at least one target column; {_LAYOUT}",
            path=csv_path,
        )
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DatasetError(
            f"CSV {csv_path} repeats the column(s) {', '.join(repeated)}; names must be unique",
            path=csv_path,
        )
    wanted = list(columns) or header[1:]
    missing = [name for name in wanted if name not in header[1:]]
    if missing:
        raise DatasetError(
            f"CSV {csv_path} has no target column(s) {', '.join(missing)}; its target columns "
            f"are {', '.join(header[1:])}",
            path=csv_path,
        )
    if len(rows) == 1:
        raise DatasetError(f"CSV {csv_path} has a header but no rows; {_LAYOUT}", path=csv_path)
    positions = [header.index(name) for name in wanted]
    base = csv_path.parent
    problems: list[str] = []
    paths: list[Path] = []
    targets: list[tuple[float, ...]] = []
    for line, row in numbered[1:]:
        if len(row) != len(header):
            problems.append(f"line {line}: {len(row)} fields, the header has {len(header)}")
            continue
        image = Path(row[0].strip())
        image = image if image.is_absolute() else base / image
        values = [_number(row[i].strip()) for i in positions]
        bad = [(wanted[k], row[i]) for k, i in enumerate(positions) if values[k] is None]
        if not row[0].strip():
            problems.append(f"line {line}: the image path is empty")
        elif not image.is_file():
            problems.append(f"line {line}: image file {image} does not exist")
        for column, value in bad:
            problems.append(f"line {line}, column {column!r}: {value!r} is not a finite number")
        if len(problems) >= MAX_PROBLEMS:
            break
        if not bad and image.is_file():
            paths.append(image)
            targets.append(tuple(v for v in values if v is not None))
    if problems:
        shown = "; ".join(problems[:MAX_PROBLEMS])
        more = " (and maybe more; fix these first)" if len(problems) >= MAX_PROBLEMS else ""
        raise DatasetError(f"CSV {csv_path}: {shown}{more}", path=csv_path)
    good, skipped = scan_images(paths, strict=strict)
    if not good:
        raise DatasetError(
            f"CSV {csv_path}: none of its {len(paths)} images is readable "
            f"(first: {skipped[0].path}: {skipped[0].reason})",
            path=csv_path,
        )
    readable = set(good)
    kept = [(p, t) for p, t in zip(paths, targets, strict=True) if p in readable]
    return TargetTable(
        csv=csv_path,
        columns=wanted,
        paths=[p for p, _ in kept],
        targets=[t for _, t in kept],
        skipped=skipped,
    )


def _sources(source: Path) -> dict[str, Path]:
    if source.is_file():
        return {"all": source}
    if not source.exists():
        raise DatasetError(f"regression data {source} does not exist; {_LAYOUT}", path=source)
    found = {name: source / f"{name}.csv" for name in ("train", "val", "test")}
    found = {name: path for name, path in found.items() if path.is_file()}
    if not found:
        csvs = sorted(p.name for p in source.glob("*.csv"))
        seen = f" (it holds {', '.join(csvs)})" if csvs else ""
        raise DatasetError(
            f"folder {source} holds no train.csv, val.csv or test.csv{seen}; {_LAYOUT}",
            path=source,
        )
    return found


def read_csv_data(
    source: Path, request: DataRequest, *, augment: str | None = None
) -> TrainingData:
    """``source`` (a CSV or a folder of them) as :class:`~visionatlas.TrainingData`.

    Items are ``(image, targets)``: a ``(3, H, W)`` float tensor and a tuple of floats, one
    per target column. ``augment`` overrides ``request.augment``.
    """
    preset = augment if augment is not None else request.augment
    train_transform = image_transform(request.input_size, train=True, augment=preset)
    eval_transform = image_transform(request.input_size, train=False)
    files = _sources(source)
    columns = list(request.labels)

    if request.purpose == "evaluate":
        held_csv = files.get("all") or files.get("test") or files.get("val")
        if held_csv is None:
            raise DatasetError(
                f"folder {source} has train.csv but neither test.csv nor val.csv to evaluate "
                "on; add one, or pass a CSV file",
                path=source,
            )
        held = read_target_table(held_csv, columns=columns, strict=request.strict)
        return TrainingData(
            train=None,
            val=ImageFiles(held.paths, held.targets, eval_transform),
            num_outputs=len(held.columns),
            labels=held.columns,
            skipped=held.skipped,
            source=str(source),
            description=f"{held_csv}: {len(held.paths)} images, targets {', '.join(held.columns)}",
        )

    train_csv = files.get("all") or files.get("train")
    if train_csv is None:
        present = ", ".join(p.name for p in files.values())
        raise DatasetError(
            f"folder {source} has {present} but no train.csv; {_LAYOUT}", path=source
        )
    train = read_target_table(train_csv, columns=columns, strict=request.strict)
    skipped = list(train.skipped)
    if "val" in files and "all" not in files:
        val = read_target_table(files["val"], columns=train.columns, strict=request.strict)
        skipped += val.skipped
        train_items = (train.paths, train.targets)
        val_items = (val.paths, val.targets)
        how = "val.csv"
    else:
        if len(train.paths) < 2:
            raise DatasetError(
                f"CSV {train_csv} has {len(train.paths)} readable row(s); splitting off a "
                "validation set needs at least two (or give a val.csv)",
                path=train_csv,
            )
        train_idx, val_idx = stratified_split(
            [0] * len(train.paths), request.val_fraction, request.seed
        )
        train_items = ([train.paths[i] for i in train_idx], [train.targets[i] for i in train_idx])
        val_items = ([train.paths[i] for i in val_idx], [train.targets[i] for i in val_idx])
        how = f"val_fraction={request.val_fraction}, seed={request.seed}"
    return TrainingData(
        train=ImageFiles(*train_items, transform=train_transform),
        val=ImageFiles(*val_items, transform=eval_transform),
        num_outputs=len(train.columns),
        labels=train.columns,
        skipped=skipped,
        source=str(source),
        description=(
            f"{source}: targets {', '.join(train.columns)}; {len(train_items[0])} training and "
            f"{len(val_items[0])} validation images ({how}); augment={preset}"
        ),
    )
