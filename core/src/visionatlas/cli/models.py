"""The ``registry`` and ``export`` subcommands of the ``visionatlas`` command.

``registry list`` and ``registry show`` read the SQLite index only and import neither torch
nor pydantic; ``export`` builds a model and imports torch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionatlas.catalog import Catalog
from visionatlas.cli._tables import format_table, human_count
from visionatlas.errors import VisionAtlasError
from visionatlas.lifecycle.versioning.errors import InvalidVersionError, RegistryWarning

if TYPE_CHECKING:
    from torch import nn

    from visionatlas.lifecycle.versioning.store import ModelEntry, ModelRegistry

__all__ = ["add_export_parser", "add_registry_parser"]

PROG = "visionatlas"
EXIT_OK, EXIT_USAGE = 0, 2
EXPORT_FORMATS = ("onnx", "torch-export")
_SUFFIXES = {"onnx": ".onnx", "torch-export": ".pt2"}


def _usage_error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _registry(args: argparse.Namespace, catalog: Catalog | None = None) -> ModelRegistry:
    from visionatlas.lifecycle.versioning.store import ModelRegistry

    timeout = getattr(args, "timeout", None)
    if timeout is None:
        return ModelRegistry(args.registry, catalog=catalog)
    return ModelRegistry(args.registry, catalog=catalog, timeout=timeout)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, allow_nan=False))  # never NaN: it is not JSON


def _report_problems(registry: ModelRegistry) -> None:
    """One warning line per damaged index row (the listing skipped them)."""
    for damage in registry.problems():
        print(f"{PROG}: warning: {damage}", file=sys.stderr)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


# -- registry ----------------------------------------------------------------------------------
def _cmd_registry_list(args: argparse.Namespace, catalog: Catalog) -> int:
    registry = _registry(args)
    try:
        with warnings.catch_warnings():  # damaged rows are reported below, one line each
            warnings.simplefilter("ignore", RegistryWarning)
            entries = registry.search(args.pattern, tags=args.tag or ())
    except ValueError as err:
        return _usage_error(str(err))
    _report_problems(registry)
    if args.json:
        _print_json([entry.as_dict() for entry in entries])
        return EXIT_OK
    if not entries:
        filters = [f"pattern {args.pattern!r}" if args.pattern else ""]
        filters += [f"tag {tag!r}" for tag in args.tag or ()]
        shown = " and ".join(f for f in filters if f)
        print(f"No registered models{f' match {shown}' if shown else ''} in {registry.root}.")
        return EXIT_OK
    rows = [
        (
            e.name,
            e.version,
            e.task,
            e.architecture,
            e.num_classes,
            human_count(e.num_params),
            ",".join(e.tags) or "-",
            e.created_at.replace("T", " ").removesuffix("+00:00"),
        )
        for e in entries
    ]
    headers = ("Name", "Version", "Task", "Architecture", "Classes", "Params", "Tags", "Created")
    print(format_table(headers, rows, right=(4, 5)))
    count = len(entries)
    print(f"\n{count} model version{'' if count == 1 else 's'} in {registry.root}")
    return EXIT_OK


def _cmd_registry_show(args: argparse.Namespace, catalog: Catalog) -> int:
    registry = _registry(args)
    try:
        entry = registry.get(args.name, args.version)
    except InvalidVersionError as err:
        return _usage_error(str(err))
    versions = registry.versions(entry.name)
    if args.json:
        _print_json({**entry.as_dict(), "all_versions": versions})
        return EXIT_OK
    _print_entry(entry, versions)
    return EXIT_OK


def _print_entry(entry: ModelEntry, versions: list[str]) -> None:
    info = entry.build_info
    provider = info.plugin or "-"
    if info.distribution:
        provider += f" ({info.distribution} {info.version or ''})".replace(" )", ")")
    fields: list[tuple[str, Any]] = [
        ("Name", entry.name),
        ("Version", entry.version),
        ("All versions", ", ".join(versions)),
        ("Task", info.task),
        ("Architecture", info.architecture),
        ("Classes", info.num_classes),
        ("Parameters", f"{entry.num_params:,} ({human_count(entry.num_params)})"),
        ("Tags", ", ".join(entry.tags) or "-"),
        ("Description", entry.description or "-"),
        ("Provider", provider),
        ("Created", entry.created_at),
        ("Weights", str(entry.weights_path)),
        ("SHA-256", entry.weights_sha256),
        ("Size", f"{entry.weights_size:,} bytes"),
        ("Config", json.dumps(info.config, sort_keys=True)),
    ]
    width = max(len(name) for name, _ in fields)
    print(f"{entry.name} {entry.version}:")
    for name, value in fields:
        print(f"  {name.ljust(width)}  {value}")
    if entry.metrics:
        print("Metrics:")
        for key, value in entry.metrics.items():
            print(f"  {key}: {value}")


def _cmd_registry_delete(args: argparse.Namespace, catalog: Catalog) -> int:
    from visionatlas.lifecycle.versioning.semver import normalize_version

    registry = _registry(args)
    if args.version.strip().lower() == "latest":
        return _usage_error("delete needs an explicit version, not 'latest'")
    try:
        version = normalize_version(args.version)
        registry.delete(args.name, version)  # a damaged entry too
    except InvalidVersionError as err:
        return _usage_error(str(err))
    print(f"Deleted {args.name} {version} from {registry.root}")
    return EXIT_OK


def add_registry_parser(sub: Any) -> None:
    """Add ``registry list|show|delete`` to the subcommands ``sub``."""
    registry = sub.add_parser(
        "registry",
        help="list, show and delete registered model versions",
        description="Browse the model registry (default directory: $VISIONATLAS_REGISTRY, "
        "else the user data directory).",
    )
    actions = registry.add_subparsers(dest="registry_command", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--registry",
        metavar="DIR",
        type=Path,
        help="registry directory (default: $VISIONATLAS_REGISTRY or the user data dir)",
    )
    common.add_argument("--json", action="store_true", help="print JSON")
    common.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_seconds,
        default=None,
        help="how long to wait for another process's write to finish (default: 60)",
    )

    p = actions.add_parser(
        "list", parents=[common], help="list model versions", description="List model versions."
    )
    p.add_argument(
        "pattern",
        nargs="?",
        metavar="PATTERN",
        help="glob over names; without wildcards it matches as a substring",
    )
    p.add_argument(
        "--tag", action="append", metavar="TAG", help="only versions with this tag (repeatable)"
    )
    p.set_defaults(handler=_cmd_registry_list)

    p = actions.add_parser(
        "show",
        parents=[common],
        help="show one model version",
        description="Show a model version: build info, metrics, tags, weights.",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("version", nargs="?", default="latest", metavar="VERSION")
    p.set_defaults(handler=_cmd_registry_show)

    p = actions.add_parser(
        "delete",
        parents=[common],
        help="delete one model version",
        description="Delete a model version (and its weight file unless another version "
        "shares it).",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("version", metavar="VERSION")
    p.set_defaults(handler=_cmd_registry_delete)


# -- export ------------------------------------------------------------------------------------
def _parse_config(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    raw = Path(text[1:]).read_text(encoding="utf-8") if text.startswith("@") else text
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError(f"--config must be a JSON object, got {type(value).__name__}")
    return value


def _model_from_weights(args: argparse.Namespace, catalog: Catalog) -> tuple[nn.Module, str]:
    source = args.weights
    if Path(source).exists():
        from visionatlas.lifecycle.checkpoint import load_checkpoint

        checkpoint = load_checkpoint(source)
        if checkpoint.model is None:  # pragma: no cover - load_checkpoint rebuilds or raises
            raise ValueError(f"checkpoint {source} holds no model")
        return checkpoint.model, f"checkpoint {source}"
    name, _, version = source.partition("@")
    registry = _registry(args, catalog)
    entry = registry.get(name, version or "latest")
    return registry.load(entry.name, entry.version), f"registered model {entry.ref}"


def _out_problem(out: Path, suffix: str) -> str | None:
    """Why ``--out`` cannot take the export, or ``None`` when it can (nothing is created)."""
    accepted = "give a file path in a directory you can write to"
    if out.is_dir():
        return f"--out {out} is a directory; {accepted}, such as {out / ('model' + suffix)}"
    ancestor = next((p for p in (out.parent, *out.parent.parents) if p.exists()), Path.cwd())
    if not ancestor.is_dir():
        return f"--out {out}: {ancestor} is a file, not a directory; {accepted}"
    try:  # the real test (permissions, read-only file systems), unlike os.access as root
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as err:
        return f"--out {out}: cannot write in {ancestor} ({err.strerror or err}); {accepted}"
    if out.exists() and not os.access(out, os.W_OK):
        return f"--out {out} exists and is read-only; {accepted}"
    return None


def _cmd_export(args: argparse.Namespace, catalog: Catalog) -> int:
    from visionatlas.lifecycle.rebuild import build_info_of

    if (args.task is None) != (args.architecture is None):
        return _usage_error("give both TASK and ARCH, or neither (with --weights)")
    if args.weights is None and args.task is None:
        return _usage_error("give TASK and ARCH, or --weights with a checkpoint or NAME@VERSION")
    if args.weights is not None and (args.config is not None or args.num_classes is not None):
        return _usage_error(
            "--config and --num-classes come from --weights (the model's build info); drop them"
        )
    try:
        config = _parse_config(args.config)
    except (OSError, ValueError) as err:
        return _usage_error(f"bad --config: {err}")
    problem = _out_problem(args.out, _SUFFIXES[args.format])
    if problem is not None:
        return _usage_error(problem)
    if args.format != "onnx" and args.opset is not None:
        return _usage_error(f"--opset applies to --format onnx only, not {args.format}")
    if args.format == "onnx":
        from visionatlas.lifecycle.export import DEFAULT_OPSET, supported_opsets

        args.opset = DEFAULT_OPSET if args.opset is None else args.opset
        lowest, highest = supported_opsets()
        if not lowest <= args.opset <= highest:
            return _usage_error(
                f"--opset {args.opset} is not supported; the installed exporter accepts "
                f"opsets {lowest} to {highest}"
            )
    if args.task is not None:
        catalog.get_architecture(args.task, args.architecture)  # unknown names: exit 2
    try:
        if args.weights is not None:
            model, source = _model_from_weights(args, catalog)
            info = build_info_of(model)
            if (
                args.task is not None
                and info is not None
                and ((info.task, info.architecture) != (args.task, args.architecture))
            ):
                return _usage_error(
                    f"--weights hold a {info.task}/{info.architecture} model, not "
                    f"{args.task}/{args.architecture}"
                )
        else:
            model = catalog.create_model(args.task, args.architecture, config, args.num_classes)
            source = f"{args.task}/{args.architecture} (random weights)"
    except InvalidVersionError as err:
        return _usage_error(str(err))
    except VisionAtlasError:  # corrupt checkpoint, missing plugin...: exit 1 in main()
        raise
    except ValueError as err:  # an invalid config (pydantic) or num_classes
        return _usage_error(str(err))
    from visionatlas.lifecycle.export import export_onnx, export_program

    if args.format == "onnx":
        result = export_onnx(
            model,
            args.out,
            input_size=args.input_size,
            dynamic_batch=not args.static_batch,
            dynamic_size=args.dynamic_size,
            opset=args.opset,
            check=args.check,
        )
        if args.json:
            _print_json({**result.as_dict(), "format": "onnx", "source": source})
            return EXIT_OK
        shapes = ", ".join(
            f"{name} {_shape(shape, result)}"
            for name, shape in zip(result.output_names, result.output_shapes, strict=True)
        )
        print(f"Exported {source} to {result.path} (ONNX opset {result.opset})")
        print(f"  input   images {_shape(result.input_shape, result, image=True)}")
        print(f"  outputs {shapes}")
        if result.max_abs_diff is not None:
            print(f"  checked with onnxruntime: max |difference| {result.max_abs_diff:.3g}")
        return EXIT_OK
    program = export_program(
        model,
        input_size=args.input_size,
        dynamic_batch=not args.static_batch,
        dynamic_size=args.dynamic_size,
        path=args.out,
    )
    diff = _check_program(model, program, args) if args.check else None
    if args.json:
        _print_json(
            {
                "path": str(args.out),
                "format": "torch-export",
                "source": source,
                "max_abs_diff": diff,
            }
        )
        return EXIT_OK
    print(f"Exported {source} to {args.out} (torch.export program)")
    if diff is not None:
        print(f"  checked against the model: max |difference| {diff:.3g}")
    return EXIT_OK


def _check_program(model: nn.Module, program: Any, args: argparse.Namespace) -> float:
    """Run the exported program on a batch of another size; return the max difference."""
    import torch

    from visionatlas.lifecycle.export import ExportError, example_images

    batch = 2 if args.static_batch else 3
    images = example_images(model, input_size=args.input_size, batch_size=batch)
    with torch.no_grad():
        got, want = program.module()(images), model.eval()(images)
    if not isinstance(got, torch.Tensor) or not isinstance(want, torch.Tensor):
        raise ExportError("--check compares models with one tensor output only")
    return float((got - want).abs().max())


def _shape(shape: tuple[int, ...], result: Any, *, image: bool = False) -> str:
    dims = [str(d) for d in shape]
    if result.dynamic_batch and dims:
        dims[0] = "N"
    if image and result.dynamic_size and len(dims) == 4:
        dims[2:] = ["H", "W"]
    return "(" + ", ".join(dims) + ")"


def add_export_parser(sub: Any, *, input_size: Any, positive_int: Any) -> None:
    """Add ``export`` to the subcommands ``sub`` (argument types shared with the CLI)."""
    p = sub.add_parser(
        "export",
        help="export a model to ONNX or a torch.export program",
        description="Export an architecture (random weights) or a stored model (--weights: "
        "a checkpoint directory or a registered NAME[@VERSION]) to ONNX or torch.export.",
    )
    p.add_argument("task", nargs="?", metavar="TASK")
    p.add_argument("architecture", nargs="?", metavar="ARCH")
    p.add_argument("--format", choices=EXPORT_FORMATS, default="onnx", help="default: onnx")
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="output file")
    p.add_argument(
        "--num-classes", type=positive_int, metavar="N", help="default: the architecture's"
    )
    p.add_argument("--config", metavar="JSON", help="model config as JSON, or @FILE")
    p.add_argument(
        "--input-size",
        type=input_size,
        metavar="SIZE",
        help="N or HxW (default: the architecture's input size)",
    )
    p.add_argument(
        "--weights",
        metavar="SOURCE",
        help="a checkpoint directory, or a registered model NAME[@VERSION]",
    )
    p.add_argument("--registry", metavar="DIR", type=Path, help="registry directory for --weights")
    p.add_argument(
        "--opset", type=positive_int, default=None, help="ONNX opset (default: 18; onnx only)"
    )
    p.add_argument("--static-batch", action="store_true", help="fix the batch size")
    p.add_argument(
        "--dynamic-size", action="store_true", help="leave the image height and width free"
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="run the export (ONNX: in onnxruntime) on another batch size and compare",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_cmd_export)
