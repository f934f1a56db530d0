"""The ``export`` command: export a model to ONNX or a ``torch.export`` program.

The model is an architecture with random weights, or a stored one (``--weights``: a
checkpoint directory or a registered ``NAME[@VERSION]``). It builds a model and imports
torch.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionatlas.catalog import Catalog
from visionatlas.cli._common import EXIT_OK, input_size, positive_int, print_json, usage_error
from visionatlas.cli.registry import open_registry
from visionatlas.errors import VisionAtlasError
from visionatlas.lifecycle.versioning.errors import InvalidVersionError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["EXPORT_FORMATS", "add_export_parser"]

EXPORT_FORMATS = ("onnx", "torch-export")
_SUFFIXES = {"onnx": ".onnx", "torch-export": ".pt2"}


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
    registry = open_registry(args, catalog)
    entry = registry.get(name, version or "latest")
    return registry.load(entry.name, entry.version), f"registered model {entry.ref}"


def _file_path(text: str) -> Path:
    """``--out``: a file path; one ending in a separator names a directory and is refused."""
    if text.endswith(("/", os.sep)):
        raise argparse.ArgumentTypeError(
            f"{text!r} names a directory; give a file path such as {text}model.onnx"
        )
    return Path(text)


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
        return usage_error("give both TASK and ARCH, or neither (with --weights)")
    if args.weights is None and args.task is None:
        return usage_error("give TASK and ARCH, or --weights with a checkpoint or NAME@VERSION")
    if args.weights is not None and (args.config is not None or args.num_classes is not None):
        return usage_error(
            "--config and --num-classes come from --weights (the model's build info); drop them"
        )
    try:
        config = _parse_config(args.config)
    except (OSError, ValueError) as err:
        return usage_error(f"bad --config: {err}")
    problem = _out_problem(args.out, _SUFFIXES[args.format])
    if problem is not None:
        return usage_error(problem)
    if args.format != "onnx" and args.opset is not None:
        return usage_error(f"--opset applies to --format onnx only, not {args.format}")
    if args.format == "onnx":
        from visionatlas.lifecycle.onnx_export import DEFAULT_OPSET, supported_opsets

        args.opset = DEFAULT_OPSET if args.opset is None else args.opset
        lowest, highest = supported_opsets()
        if not lowest <= args.opset <= highest:
            return usage_error(
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
                return usage_error(
                    f"--weights hold a {info.task}/{info.architecture} model, not "
                    f"{args.task}/{args.architecture}"
                )
        else:
            model = catalog.create_model(args.task, args.architecture, config, args.num_classes)
            source = f"{args.task}/{args.architecture} (random weights)"
    except InvalidVersionError as err:
        return usage_error(str(err))
    except VisionAtlasError:  # corrupt checkpoint, missing plugin...: exit 1 in main()
        raise
    except ValueError as err:  # an invalid config (pydantic) or num_classes
        return usage_error(str(err))
    from visionatlas.lifecycle.export import export_program
    from visionatlas.lifecycle.onnx_export import export_onnx

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
            print_json({**result.as_dict(), "format": "onnx", "source": source}, allow_nan=False)
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
        print_json(
            {
                "path": str(args.out),
                "format": "torch-export",
                "source": source,
                "max_abs_diff": diff,
            },
            allow_nan=False,
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


def add_export_parser(sub: Any) -> None:
    """Add ``export`` to the subcommands ``sub``."""
    p = sub.add_parser(
        "export",
        help="export a model to ONNX or a torch.export program",
        description="Export an architecture (random weights) or a stored model (--weights: "
        "a checkpoint directory or a registered NAME[@VERSION]) to ONNX or torch.export.",
    )
    p.add_argument("task", nargs="?", metavar="TASK")
    p.add_argument("architecture", nargs="?", metavar="ARCH")
    p.add_argument("--format", choices=EXPORT_FORMATS, default="onnx", help="default: onnx")
    p.add_argument("--out", type=_file_path, required=True, metavar="FILE", help="output file")
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
