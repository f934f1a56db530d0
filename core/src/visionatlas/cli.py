"""The ``visionatlas`` command line: browse the catalog and run a demo of every task.

``list``, ``backbones`` and ``plugins`` read metadata only and import neither torch nor
pydantic; ``show --schema`` imports pydantic and ``demo`` imports torch.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from visionatlas import __version__
from visionatlas._lazy import resolve
from visionatlas.catalog import Catalog, get_catalog
from visionatlas.errors import UnknownBackboneError, UnknownNameError, VisionAtlasError
from visionatlas.registry import PluginReport
from visionatlas.specs import ArchitectureSpec, BackboneSpec

if TYPE_CHECKING:
    from torch import nn

__all__ = ["format_table", "human_count", "main", "summarize"]

PROG = "visionatlas"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
_GLOB_CHARS = frozenset("*?[")
_NOTE_WIDTH = 60
_ERROR_WIDTH = 70
_VARYING = "k"
"""Shown for a dimension that differs between the elements of a list output."""


# -- formatting helpers ------------------------------------------------------------------------
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


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def _shorten(text: str, width: int) -> str:
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


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def _glob(pattern: str | None) -> str | None:
    """A pattern without wildcards matches as a substring (``resnet`` -> ``*resnet*``)."""
    if pattern is None or _GLOB_CHARS & set(pattern):
        return pattern
    return f"*{pattern}*"


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


def _tree(value: Any, *, int_tuples_are_shapes: bool = False) -> Any:
    """Reduce an output (or an inferred-shape structure) to shapes, dicts and sequences."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):  # a tensor, without importing torch
        return _Dims(tuple(int(d) for d in value.shape))
    if isinstance(value, Mapping):
        return {str(k): _tree(v, int_tuples_are_shapes=int_tuples_are_shapes)
                for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
        return {f: _tree(getattr(value, f), int_tuples_are_shapes=int_tuples_are_shapes)
                for f in value._fields}
    if isinstance(value, tuple | list):
        if int_tuples_are_shapes and isinstance(value, tuple) and all(
            isinstance(d, int) for d in value
        ):
            return _Dims(value)
        items = tuple(_tree(v, int_tuples_are_shapes=int_tuples_are_shapes) for v in value)
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


def _render(tree: Any, max_items: int = 6) -> str:
    if isinstance(tree, _Dims):
        return str(tree)
    if isinstance(tree, dict):
        parts = [f"{k}: {_render(v, max_items)}" for k, v in list(tree.items())[:max_items]]
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
            return f"{tree.kind}[{len(tree.items)}] of {_render(merged, max_items)}"
        parts = [_render(item, max_items) for item in tree.items[:max_items]]
        if len(tree.items) > max_items:
            parts.append("...")
        return f"{tree.kind}(" + ", ".join(parts) + ")"
    return str(tree)


def _jsonable(tree: Any) -> Any:
    if isinstance(tree, _Dims):
        return list(tree.dims)
    if isinstance(tree, dict):
        return {k: _jsonable(v) for k, v in tree.items()}
    if isinstance(tree, _Seq):
        return [_jsonable(v) for v in tree.items]
    return tree


def summarize(value: Any, *, inferred: bool = False) -> str:
    """Describe tensors, dicts and lists of tensors by shape.

    ``[2, 1000]``; ``{out: [2, 21, 64, 64], aux: [2, 21, 64, 64]}``;
    ``list[2] of {boxes: [k, 4], labels: [k]}`` (``k``: differs between elements).
    ``inferred=True`` reads tuples of ints as shapes (as :func:`infer_output_shape` returns).
    """
    return _render(_tree(value, int_tuples_are_shapes=inferred))


# -- metadata as plain data --------------------------------------------------------------------
def _backbone_dict(spec: BackboneSpec) -> dict[str, Any]:
    provider = spec.provider
    return {
        "name": spec.name,
        "display_name": spec.title,
        "family": spec.family,
        "num_params": spec.num_params,
        "out_channels": spec.out_channels,
        "pre_logits_dim": spec.pre_logits_dim,
        "feature_levels": [
            {"name": lv.name, "channels": lv.channels, "stride": lv.stride}
            for lv in spec.feature_levels
        ],
        "multiscale": spec.multiscale,
        "pretrained_weights": spec.pretrained_weights,
        "default_input_size": spec.default_input_size,
        "min_input_size": spec.min_input_size,
        "note": spec.note,
        "tags": list(spec.tags),
        "plugin": provider.name if provider else None,
    }


_KINDS = ("task", "backbone", "head", "architecture")


def _counts(report: PluginReport) -> dict[str, int]:
    kinds = [*_KINDS, *sorted(set(report.registered) - set(_KINDS))]
    return {k: len(report.registered[k]) for k in kinds if report.registered.get(k)}


def _counts_text(counts: Mapping[str, int]) -> str:
    if not counts:
        return "nothing"
    return ", ".join(f"{n} {kind}{'' if n == 1 else 's'}" for kind, n in counts.items())


# -- commands ----------------------------------------------------------------------------------
def _cmd_list(args: argparse.Namespace, catalog: Catalog) -> int:
    specs = catalog.architectures(args.task, _glob(args.pattern))
    if args.json:
        _print_json([spec.as_dict() for spec in specs])
        return EXIT_OK
    if not specs:
        print(_nothing_found("architectures", task=args.task, pattern=args.pattern))
        return EXIT_OK
    rows = [
        (
            spec.task,
            spec.name,
            spec.title,
            human_count(spec.num_params),
            _shorten(spec.note, _NOTE_WIDTH),
            spec.provider.name if spec.provider else "-",
        )
        for spec in specs
    ]
    print(format_table(("Task", "Name", "Display name", "Params", "Note", "Plugin"), rows,
                       right=(3,)))
    print(f"\n{len(specs)} architecture{'' if len(specs) == 1 else 's'}")
    return EXIT_OK


def _nothing_found(what: str, *, task: str | None = None, pattern: str | None = None) -> str:
    filters = [f"task {task!r}" if task else "", f"pattern {pattern!r}" if pattern else ""]
    shown = " and ".join(f for f in filters if f)
    return f"No {what}" + (f" match {shown}." if shown else " are registered.") + (
        " Run 'visionatlas plugins' to see what each plugin registered."
    )


def _cmd_show(args: argparse.Namespace, catalog: Catalog) -> int:
    spec = catalog.get_architecture(args.task, args.architecture)
    info = spec.as_dict()
    backbone: dict[str, Any] | None = None
    backbone_error: str | None = None
    if spec.backbone is not None:
        try:
            backbone = _backbone_dict(catalog.get_backbone(spec.backbone))
        except UnknownBackboneError as err:
            backbone_error = str(err)
    info["backbone_info"] = backbone
    if args.schema:
        info["config_schema"] = catalog.config_class(args.task, args.architecture
                                                     ).model_json_schema()
    if args.json:
        _print_json(info)
        return EXIT_OK
    _print_show(spec, info, backbone, backbone_error)
    return EXIT_OK


def _print_show(
    spec: ArchitectureSpec,
    info: dict[str, Any],
    backbone: dict[str, Any] | None,
    backbone_error: str | None,
) -> None:
    params = spec.num_params
    fields = [
        ("Task", spec.task),
        ("Name", spec.name),
        ("Display name", spec.title),
        ("Note", spec.note or "-"),
        ("Parameters", "-" if params is None else f"{params:,} ({human_count(params)})"),
        ("Default classes", spec.default_num_classes),
        ("Pretrained", "available" if spec.pretrained_available else "not available"),
        ("Backbone", spec.backbone or "-"),
        ("Compatible backbones", ", ".join(spec.compatible_backbones) or "-"),
        ("Tags", ", ".join(spec.tags) or "-"),
    ]
    _print_section(f"{spec.task}/{spec.name}", fields)
    _print_section("Default hyperparameters", list(spec.hyperparameters.as_dict().items()))
    _print_section("Provider", [
        ("Plugin", info["plugin"] or "-"),
        ("Distribution", info["distribution"] or "-"),
        ("Version", info["version"] or "-"),
    ])
    if backbone is not None:
        _print_section(f"Backbone {backbone['name']}", [
            ("Family", backbone["family"]),
            ("Parameters", human_count(backbone["num_params"])),
            ("Out channels", backbone["out_channels"]),
            ("Pre-logits dim", backbone["pre_logits_dim"]),
            ("Pretrained weights", backbone["pretrained_weights"] or "-"),
            ("Input size", f"default {backbone['default_input_size']}, "
                           f"min {backbone['min_input_size']}"),
            ("Plugin", backbone["plugin"] or "-"),
        ])
        levels = [(lv["name"], lv["channels"], lv["stride"]) for lv in backbone["feature_levels"]]
        if levels:
            print("Feature levels:")
            table = format_table(("Level", "Channels", "Stride"), levels, right=(1, 2))
            print("\n".join("  " + line for line in table.splitlines()))
            print()
    elif backbone_error is not None:
        _print_section("Backbone", [("Error", backbone_error)])
    if "config_schema" in info:
        print("Config schema:")
        print(json.dumps(info["config_schema"], indent=2))


def _print_section(title: str, fields: Sequence[tuple[str, Any]]) -> None:
    print(f"{title}:")
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        print(f"  {name.ljust(width)}  {value}")
    print()


def _cmd_backbones(args: argparse.Namespace, catalog: Catalog) -> int:
    specs = catalog.backbones(_glob(args.pattern), pretrained_only=args.pretrained_only)
    if args.json:
        _print_json([_backbone_dict(spec) for spec in specs])
        return EXIT_OK
    if not specs:
        what = "backbones with pretrained weights" if args.pretrained_only else "backbones"
        print(_nothing_found(what, pattern=args.pattern))
        return EXIT_OK
    rows = [
        (
            spec.name,
            spec.family,
            human_count(spec.num_params),
            spec.out_channels,
            ",".join(str(lv.stride) for lv in spec.feature_levels) or "-",
            spec.pretrained_weights or "-",
        )
        for spec in specs
    ]
    print(format_table(
        ("Name", "Family", "Params", "Out channels", "Strides", "Pretrained weights"), rows,
        right=(2, 3),
    ))
    print(f"\n{len(specs)} backbone{'' if len(specs) == 1 else 's'}")
    return EXIT_OK


def _cmd_plugins(args: argparse.Namespace, catalog: Catalog) -> int:
    reports = catalog.list_plugins()
    if args.json:
        _print_json([{**r.as_dict(), "counts": _counts(r)} for r in reports])
        return EXIT_OK
    if not reports:
        print("No plugins found.")
        return EXIT_OK
    rows = [
        (r.name, r.distribution or "-", r.version or "-", r.status, _counts_text(_counts(r)))
        for r in reports
    ]
    print(format_table(("Name", "Distribution", "Version", "Status", "Registered"), rows))
    problems = [(r.name, p) for r in reports for p in r.problems]
    if problems:
        print(f"\nProblems ({len(problems)}):")
        for name, problem in problems:
            print(f"  {name}: {' '.join(str(problem).split())}")
    return EXIT_OK


# -- demo --------------------------------------------------------------------------------------
@dataclass
class _DemoResult:
    task: str
    architecture: str | None = None
    input_tree: Any = None
    output_tree: Any = None
    inferred_output: str | None = None
    inferred_error: str | None = None
    num_params: int | None = None
    build_s: float | None = None
    forward_s: float | None = None
    forward_runs: tuple[float, ...] = ()
    note: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "architecture": self.architecture,
            "status": "error" if self.error else "ok",
            "input_shape": _jsonable(self.input_tree),
            "input": None if self.input_tree is None else _render(self.input_tree),
            "output_shape": _jsonable(self.output_tree),
            "output": self.output,
            "inferred_output": self.inferred_output,
            "inferred_error": self.inferred_error,
            "num_params": self.num_params,
            "build_s": _round(self.build_s),
            "forward_s": _round(self.forward_s),
            "forward_runs_s": [_round(t) for t in self.forward_runs],
            "note": self.note,
            "error": self.error,
        }

    @property
    def output(self) -> str | None:
        return None if self.output_tree is None else _render(self.output_tree)


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 6)


def _demo_architecture(catalog: Catalog, task: str) -> tuple[str, str | None]:
    """The architecture to demo and, when the task's own choice is unusable, why not."""
    spec = catalog.get_task(task)
    names = catalog.list_architectures(task)
    if not names:
        raise LookupError(f"task {task!r} has no registered architectures")
    chosen = spec.demo_architecture
    if chosen is None:
        return names[0], None
    if chosen in names:
        return chosen, None
    return names[0], (f"demo architecture {chosen!r} of task {task!r} is not registered; "
                      f"using {names[0]!r}")


def _preload(catalog: Catalog, task: str, architecture: str) -> None:
    """Import the code a build needs, so that build time measures construction only."""
    spec = catalog.get_architecture(task, architecture)
    references: list[Any] = [spec.builder, spec.config_class]
    if spec.backbone is not None and spec.backbone in catalog.list_backbones():
        references.append(catalog.get_backbone(spec.backbone).builder)
    for reference in references:
        target = getattr(reference, "reference", reference)  # a LazyCall's target
        if isinstance(target, str):
            with contextlib.suppress(Exception):  # a real failure surfaces in the build
                resolve(target)


def _example_batch(catalog: Catalog, task: str, batch_size: int, size: tuple[int, int]) -> Any:
    import torch

    spec = catalog.get_task(task)
    if spec.example_inputs is None:
        return torch.rand(batch_size, 3, *size)
    make = resolve(spec.example_inputs)
    return make(batch_size=batch_size, input_size=size)


def _run_demo(
    catalog: Catalog, task: str, *, batch_size: int, size: tuple[int, int], repeats: int, seed: int
) -> _DemoResult:
    import torch

    from visionatlas.inspection import count_parameters, infer_output_shape

    result = _DemoResult(task=task)
    try:
        result.architecture, result.note = _demo_architecture(catalog, task)
        _preload(catalog, task, result.architecture)
        torch.manual_seed(seed)
        start = time.perf_counter()
        model: nn.Module = catalog.create_model(task, result.architecture)
        result.build_s = time.perf_counter() - start
        model.eval()
        result.num_params = count_parameters(model, trainable_only=False)
        torch.manual_seed(seed)
        batch = _example_batch(catalog, task, batch_size, size)
        result.input_tree = _tree(batch)
        with torch.inference_mode():
            output = model(batch)  # warm-up
            runs = []
            for _ in range(repeats):
                start = time.perf_counter()
                model(batch)
                runs.append(time.perf_counter() - start)
        result.forward_runs = tuple(runs)
        result.forward_s = statistics.median(runs)
        result.output_tree = _tree(output)
    except Exception as err:  # one failing task must not stop the others
        result.error = f"{type(err).__name__}: {err}"
        return result
    try:
        result.inferred_output = summarize(infer_output_shape(model, batch), inferred=True)
    except Exception as err:  # inference on the meta device is best effort
        result.inferred_error = f"{type(err).__name__}: {err}"
    return result


def _cmd_demo(args: argparse.Namespace, catalog: Catalog) -> int:
    tasks = list(dict.fromkeys(args.task)) if args.task else catalog.list_tasks()
    for task in tasks:
        catalog.get_task(task)  # unknown task: exit 2 before anything runs
    if not tasks:
        print(f"{PROG}: error: no tasks are installed; run 'visionatlas plugins' to see why",
              file=sys.stderr)
        return EXIT_FAILURE
    import torch

    with contextlib.suppress(ImportError):  # keep one-time imports out of the build time
        import torchvision  # noqa: F401
    size = args.input_size
    results = []
    for task in tasks:
        if not args.json:
            print(f"running {task} ...", file=sys.stderr, flush=True)
        results.append(_run_demo(catalog, task, batch_size=args.batch_size, size=size,
                                 repeats=args.repeats, seed=args.seed))
    failed = [r for r in results if r.error]
    if args.json:
        _print_json({
            "batch_size": args.batch_size,
            "input_size": list(size),
            "repeats": args.repeats,
            "seed": args.seed,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "results": [r.as_dict() for r in results],
        })
        return EXIT_FAILURE if failed else EXIT_OK
    _print_demo(results, args)
    return EXIT_FAILURE if failed else EXIT_OK


def _print_demo(results: list[_DemoResult], args: argparse.Namespace) -> None:
    import torch

    rows: list[tuple[Any, ...]] = []
    for r in results:
        if r.error:
            rows.append((r.task, r.architecture or "-", "-", "ERROR: " + _shorten(
                r.error, _ERROR_WIDTH), "-", "-", "-", "-"))
            continue
        inferred = r.inferred_output or "n/a"
        if r.inferred_output is not None and r.inferred_output == r.output:
            inferred = "same"
        rows.append((
            r.task,
            r.architecture,
            _render(r.input_tree),
            r.output,
            inferred,
            human_count(r.num_params),
            _seconds(r.build_s),
            _seconds(r.forward_s),
        ))
    print(format_table(
        ("Task", "Architecture", "Input", "Output", "Inferred output", "Params", "Build",
         "Forward"),
        rows,
        right=(5, 6, 7),
    ))
    h, w = args.input_size
    print(f"\nbatch size {args.batch_size}, input {h}x{w}, forward time: median of "
          f"{args.repeats} run{'' if args.repeats == 1 else 's'} after one warm-up "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads, CPU)")
    notes = [f"  {r.task}: {r.note}" for r in results if r.note]
    notes += [f"  {r.task}: shape inference failed: {_shorten(r.inferred_error, 200)}"
              for r in results if r.inferred_error and not r.error]
    if notes:
        print("Notes:\n" + "\n".join(notes))
    errors = [r for r in results if r.error]
    if errors:
        print(f"\n{len(errors)} of {len(results)} task{'' if len(results) == 1 else 's'} "
              "failed:", file=sys.stderr)
        for r in errors:
            print(f"  {r.task} ({r.architecture or 'no architecture'}): {r.error}",
                  file=sys.stderr)


# -- argument parsing --------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _input_size(text: str) -> tuple[int, int]:
    parts = text.lower().replace("x", ",").split(",")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        dims = []
    if len(dims) == 1:
        dims *= 2
    if len(dims) != 2 or min(dims) < 1:
        raise argparse.ArgumentTypeError(
            f"expected a size such as 224 or HxW such as 224x160 (positive), got {text!r}"
        )
    return dims[0], dims[1]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``visionatlas`` command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Browse the visionatlas catalog of vision architectures and run demos.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="do not print plugin warnings")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    pattern_help = ("glob over names, e.g. 'resnet*'; without wildcards it matches as a "
                    "substring")

    p = sub.add_parser("list", help="list architectures",
                       description="List architectures (reads metadata only; fast).")
    p.add_argument("--task", help="only this task")
    p.add_argument("--pattern", metavar="GLOB", help=pattern_help)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_cmd_list)

    p = sub.add_parser("show", help="show one architecture's metadata",
                       description="Show an architecture: metadata, default hyperparameters, "
                                   "provider and backbone.")
    p.add_argument("task", metavar="TASK")
    p.add_argument("architecture", metavar="ARCH")
    p.add_argument("--schema", action="store_true",
                   help="add the JSON schema of the architecture's config")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_cmd_show)

    p = sub.add_parser("backbones", help="list backbones",
                       description="List backbones with channels, strides and weights.")
    p.add_argument("pattern", nargs="?", metavar="PATTERN", help=pattern_help)
    p.add_argument("--pretrained-only", action="store_true",
                   help="only backbones with pretrained weights")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_cmd_backbones)

    p = sub.add_parser("plugins", help="list discovered plugins and their problems",
                       description="List discovered plugins: status, what they registered "
                                   "and their problems.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_cmd_plugins)

    p = sub.add_parser("demo", help="build each task's demo model and time a forward pass",
                       description="Build each task's demo architecture (default config, "
                                   "random weights), run a synthetic batch through it and "
                                   "time it. Exit code 1 when any task fails.")
    p.add_argument("--task", action="extend", nargs="+", metavar="T",
                   help="only these tasks (repeatable); default: every installed task")
    p.add_argument("--batch-size", type=_positive_int, default=2, help="default: 2")
    p.add_argument("--input-size", type=_input_size, default=(224, 224), metavar="SIZE",
                   help="N or HxW (default: 224)")
    p.add_argument("--repeats", type=_positive_int, default=3,
                   help="timed forward passes after the warm-up (default: 3)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_cmd_demo)
    return parser


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{PROG}: {record.levelname.lower()}: {record.getMessage()}"


@contextlib.contextmanager
def _plugin_warnings(level: int) -> Iterator[None]:
    """Show the ``visionatlas`` logger's warnings (broken plugins) on stderr, briefly."""
    logger = logging.getLogger("visionatlas")
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(_Formatter())
    previous = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = previous


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE if exit_.code else 0
    handler: Callable[[argparse.Namespace, Catalog], int] = args.handler
    # the plugins table shows every problem itself
    quiet = args.quiet or args.command == "plugins"
    try:
        with _plugin_warnings(logging.CRITICAL + 1 if quiet else logging.WARNING):
            return handler(args, get_catalog())
    except UnknownNameError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except VisionAtlasError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:  # e.g. `visionatlas list | head`: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
