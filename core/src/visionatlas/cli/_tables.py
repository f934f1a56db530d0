"""Plain-text formatting: counts, durations, aligned tables and shape summaries.

Nothing here imports torch: tensors are recognised by their ``shape`` and ``dtype``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "describe_variable_output",
    "format_seconds",
    "format_table",
    "human_count",
    "jsonable",
    "render",
    "shape_tree",
    "shorten",
    "summarize",
]

_VARYING = "k"
"""Shown for a dimension that differs between the elements of a list output."""


def human_count(value: int | None) -> str:
    """``25557032 -> '25.6M'``; counts below 1000 are shown exactly, ``None`` as ``'-'``."""
    if value is None:
        return "-"
    if abs(value) < 1000:
        return str(value)
    scaled = float(value)
    for unit in ("K", "M", "B", "T"):
        scaled /= 1000
        if abs(round(scaled, 1)) < 1000 or unit == "T":
            return f"{scaled:.1f}{unit}"
    raise AssertionError("unreachable")


def format_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], *, right: Sequence[int] = ()
) -> str:
    """Columns aligned with two spaces, a dashed rule under the headers.

    Cells are converted with ``str``; columns whose index is in ``right`` are right-aligned.
    """
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ).rstrip()

    return "\n".join([line(cells[0]), line(["-" * w for w in widths]), *map(line, cells[1:])])


# -- summarizing (nested) tensors --------------------------------------------------------------
@dataclass(frozen=True)
class _Dims:
    """A tensor shape; a dimension is ``None`` where list elements differ."""

    dims: tuple[int | None, ...]

    def __str__(self) -> str:
        return "[" + ", ".join(_VARYING if d is None else str(d) for d in self.dims) + "]"


@dataclass(frozen=True)
class _Seq:
    kind: str  # "list" or "tuple"
    items: tuple[Any, ...]


def shape_tree(value: Any, *, int_tuples_are_shapes: bool = False) -> Any:
    """Reduce an output (or an inferred-shape structure) to shapes, dicts and sequences."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):  # a tensor, without importing torch
        return _Dims(tuple(int(d) for d in value.shape))
    if isinstance(value, Mapping):
        return {
            str(k): shape_tree(v, int_tuples_are_shapes=int_tuples_are_shapes)
            for k, v in value.items()
        }
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
        return {
            f: shape_tree(getattr(value, f), int_tuples_are_shapes=int_tuples_are_shapes)
            for f in value._fields
        }
    if isinstance(value, tuple | list):
        if (
            int_tuples_are_shapes
            and isinstance(value, tuple)
            and all(isinstance(d, int) for d in value)
        ):
            return _Dims(value)
        items = tuple(shape_tree(v, int_tuples_are_shapes=int_tuples_are_shapes) for v in value)
        return _Seq("tuple" if isinstance(value, tuple) else "list", items)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return type(value).__name__


_NO_MERGE = object()


def _merge(a: Any, b: Any) -> Any:
    """One description covering both ``a`` and ``b`` (differing dims become ``k``)."""
    if isinstance(a, _Dims) and isinstance(b, _Dims):
        if len(a.dims) != len(b.dims):
            return _NO_MERGE
        return _Dims(tuple(x if x == y else None for x, y in zip(a.dims, b.dims, strict=True)))
    if isinstance(a, dict) and isinstance(b, dict):
        if list(a) != list(b):
            return _NO_MERGE
        merged = {k: _merge(a[k], b[k]) for k in a}
        return _NO_MERGE if any(v is _NO_MERGE for v in merged.values()) else merged
    if isinstance(a, _Seq) and isinstance(b, _Seq):
        if a.kind != b.kind or len(a.items) != len(b.items):
            return _NO_MERGE
        items = tuple(_merge(x, y) for x, y in zip(a.items, b.items, strict=True))
        return _NO_MERGE if any(i is _NO_MERGE for i in items) else _Seq(a.kind, items)
    if type(a) is type(b) and not isinstance(a, _Dims | dict | _Seq):
        return a if a == b else type(a).__name__
    return _NO_MERGE


def render(tree: Any, max_items: int = 6) -> str:
    if isinstance(tree, _Dims):
        return str(tree)
    if isinstance(tree, dict):
        parts = [f"{k}: {render(v, max_items)}" for k, v in list(tree.items())[:max_items]]
        if len(tree) > max_items:
            parts.append("...")
        return "{" + ", ".join(parts) + "}"
    if isinstance(tree, _Seq):
        if not tree.items:
            return f"{tree.kind}[0]"
        merged = tree.items[0]
        for item in tree.items[1:]:
            merged = _merge(merged, item)
            if merged is _NO_MERGE:
                break
        if merged is not _NO_MERGE:
            return f"{tree.kind}[{len(tree.items)}] of {render(merged, max_items)}"
        parts = [render(item, max_items) for item in tree.items[:max_items]]
        if len(tree.items) > max_items:
            parts.append("...")
        return f"{tree.kind}(" + ", ".join(parts) + ")"
    return str(tree)


def jsonable(tree: Any) -> Any:
    if isinstance(tree, _Dims):
        return list(tree.dims)
    if isinstance(tree, dict):
        return {k: jsonable(v) for k, v in tree.items()}
    if isinstance(tree, _Seq):
        return [jsonable(v) for v in tree.items]
    return tree


def summarize(value: Any, *, inferred: bool = False) -> str:
    """Describe tensors, dicts and lists of tensors by shape.

    ``[2, 1000]``; ``{out: [2, 21, 64, 64], aux: [2, 21, 64, 64]}``;
    ``list[2] of {boxes: [k, 4], labels: [k]}`` (``k``: differs between elements).
    ``inferred=True`` reads tuples of ints as shapes (as :func:`infer_output_shape` returns).
    """
    return render(shape_tree(value, int_tuples_are_shapes=inferred))


def describe_variable_output(output: Any) -> str:
    """Describe an output whose size depends on the data, from what the model returned.

    A list with one dict of tensors per image whose tensors share their first dimension
    (a detector's boxes, labels, scores, masks) reads as ``per image, a variable number K
    of detections (boxes (K, 4), labels (K,)); K = 3, 0 here``. Anything else is
    described by its shapes on this batch.
    """
    fields: dict[str, tuple[int, ...]] | None = None
    counts: list[int] = []
    items = output if isinstance(output, list | tuple) else ()
    for item in items:
        shapes = (
            {str(k): tuple(int(d) for d in v.shape) for k, v in item.items() if hasattr(v, "shape")}
            if isinstance(item, Mapping)
            else {}
        )
        leading = {shape[0] for shape in shapes.values() if shape}
        rest = {key: shape[1:] for key, shape in shapes.items()}
        if (
            not shapes
            or len(shapes) != len(item)
            or len(leading) != 1
            or fields not in (None, rest)
        ):
            fields = None
            break
        fields = rest
        counts.append(leading.pop())
    if fields is None:
        return f"its size depends on the data; for this batch: {summarize(output)}"
    noun = "detections" if "boxes" in fields else "rows"
    parts = ", ".join(f"{key} {_with_k(dims)}" for key, dims in fields.items())
    return (
        f"per image, a variable number K of {noun} ({parts}); "
        f"K = {', '.join(map(str, counts))} here"
    )


def _with_k(dims: tuple[int, ...]) -> str:
    return "(K,)" if not dims else "(K, " + ", ".join(map(str, dims)) + ")"
