"""``visionatlas train``, ``visionatlas evaluate`` and ``visionatlas predict``.

Errors are one line on stderr: exit 2 for usage errors (a bad setting, an unknown name),
1 for the rest (bad data, a diverged run).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["configure_evaluate", "configure_predict", "configure_train"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

_TRAIN_DESCRIPTION = """\
Train ARCH for TASK on DATA (a folder of images in the task's layout, or builtin:NAME)
with the architecture's catalog defaults. Override them with --config FILE (JSON or YAML)
and --set KEY=VALUE (dotted keys, JSON values), applied in that order. The run folder
gets the resolved config, metrics.csv, plots, checkpoints/last and checkpoints/best.
Examples:
  visionatlas train classification resnet18 builtin:digits --set epochs=2 --set input_size=32
  visionatlas train classification resnet18 DATA_DIR --out runs/r18 --set optimizer.name=sgd
  visionatlas train --resume runs/r18
  visionatlas train anomaly_detection uninformed_students_resnet18 builtin:stripes --out runs/a
A task that trains with its own fit (anomaly_detection) takes the settings it uses and
refuses the others by name. Every setting: visionatlas train --schema, and docs/training.md.
"""


def _print_error(prog: str, message: str) -> None:
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="training settings (JSON or YAML)")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set epochs=5 --set optimizer.name=sgd (repeatable)",
    )
    parser.add_argument(
        "--registry", metavar="DIR", help="model registry folder (default: $VISIONATLAS_REGISTRY)"
    )
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress", dest="progress", action="store_true", default=None, help="progress bars"
    )
    progress.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no progress bars (the default when stderr is not a terminal)",
    )


def configure_train(parser: argparse.ArgumentParser) -> None:
    """The ``visionatlas train`` arguments."""
    parser.description = _TRAIN_DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("task", nargs="?", metavar="TASK", help="e.g. classification")
    parser.add_argument("architecture", nargs="?", metavar="ARCH", help="e.g. resnet18")
    parser.add_argument("data", nargs="?", metavar="DATA", help="data folder or builtin:NAME")
    parser.add_argument(
        "--out", type=Path, metavar="RUN_DIR", help="run folder (default: runs/TASK-ARCH-TIME)"
    )
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a stopped run")
    parser.add_argument(
        "--register", metavar="NAME@VERSION", help="store the best model in the model registry"
    )
    parser.add_argument(
        "--strict", action="store_true", help="refuse unreadable images instead of skipping them"
    )
    _add_common(parser)
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config as JSON and exit without training",
    )
    parser.add_argument(
        "--schema", action="store_true", help="print the JSON schema of the config and exit"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors and the summary")
    parser.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    prog = "visionatlas train"
    from visionatlas_train.config import ConfigError, TrainConfig

    if args.schema:
        print(json.dumps(TrainConfig.model_json_schema(by_alias=True), indent=2))
        return EXIT_OK
    given = [args.task, args.architecture, args.data]
    if args.resume is None and None in given:
        _print_error(prog, "give TASK ARCH DATA, or --resume RUN_DIR (see --help)")
        return EXIT_USAGE
    sets = [*args.sets, *(["strict=true"] if args.strict else [])]
    if args.print_config:
        return _print_config(args, sets, prog)
    from visionatlas_train.engine import train

    try:
        result = train(
            args.task,
            args.architecture,
            args.data,
            args.config,
            out=args.out,
            register=args.register,
            resume=args.resume,
            sets=sets,
            registry=args.registry,
            progress_bar=args.progress,
            verbose=not args.quiet,
        )
    except ConfigError as err:
        _print_error(prog, str(err))
        return EXIT_USAGE
    except Exception as err:
        if not _reported(err):
            raise
        _print_error(prog, _describe(err))
        return EXIT_FAILURE
    if args.quiet and result.summary:
        from visionatlas_train.engine import print_summary

        print_summary(result.summary, result.run_dir, None)
    return EXIT_OK


def _reported(err: Exception) -> bool:
    """Whether ``err`` is a user-facing failure to print as one line (exit 1).

    Unknown names go to the command line itself (exit 2); anything else is a bug and
    keeps its traceback.
    """
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from visionatlas.errors import UnknownNameError

    if isinstance(err, UnknownNameError):
        return False
    expected = (ValueError, OSError, RuntimeError, ArithmeticError, MisconfigurationException)
    return isinstance(err, expected)


def _describe(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    if isinstance(err, FileNotFoundError) and err.filename and str(err.filename) not in text:
        text = f"{text}: {err.filename}"
    return text


def _print_config(args: argparse.Namespace, sets: list[str], prog: str) -> int:
    from visionatlas.catalog import get_catalog
    from visionatlas_train.config import ConfigError, catalog_defaults, load_config_file
    from visionatlas_train.config import resolve_config as resolve

    try:
        if args.resume is not None:
            from visionatlas_train.engine import _read_run

            base = _read_run(args.resume)["config"]
        else:
            spec = get_catalog().get_architecture(args.task, args.architecture)
            base = catalog_defaults(spec.hyperparameters)
        layer = load_config_file(args.config) if args.config else None
        config = resolve(base, layer, sets=sets)
    except ConfigError as err:
        _print_error(prog, str(err))
        return EXIT_USAGE
    print(json.dumps(config.as_json(), indent=2))
    return EXIT_OK


def configure_evaluate(parser: argparse.ArgumentParser) -> None:
    """The ``visionatlas evaluate`` arguments."""
    parser.description = (
        "Report a trained model's metrics on DATA's held-out split (test/, else val/, else "
        "all of it). SOURCE is a run folder (its best checkpoint), a checkpoint directory "
        "or a registered NAME[@VERSION]."
    )
    parser.add_argument("source", metavar="SOURCE", help="RUN_DIR, checkpoint or NAME@VERSION")
    parser.add_argument("data", metavar="DATA", help="data folder or builtin:NAME")
    _add_common(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    prog = "visionatlas evaluate"
    from visionatlas_train.config import ConfigError, load_config_file
    from visionatlas_train.engine import evaluate

    try:
        layer = load_config_file(args.config) if args.config else None
        result = evaluate(
            args.source,
            args.data,
            config=layer,
            sets=args.sets,
            registry=args.registry,
            progress_bar=args.progress,
        )
    except ConfigError as err:
        _print_error(prog, str(err))
        return EXIT_USAGE
    except Exception as err:
        if not _reported(err):
            raise
        _print_error(prog, _describe(err))
        return EXIT_FAILURE
    if args.json:
        print(json.dumps(result.as_dict(), indent=2, allow_nan=False))
        return EXIT_OK
    _print_evaluation(result.as_dict())
    return EXIT_OK


def _print_evaluation(report: dict[str, Any]) -> None:
    print(f"{report['source']} on {report['data']}: {report['num_images']} images")
    width = max((len(name) for name in report["metrics"]), default=0)
    for name, value in sorted(report["metrics"].items()):
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"  {name.ljust(width)}  {shown}")
    for name, matrix in report["matrices"].items():
        print(f"{name}:")
        labels = report["labels"]
        rows = matrix if isinstance(matrix, list) else [matrix]
        cell = max(
            [len(str(v)) for row in rows for v in _row(row)] + [len(s) for s in labels] + [1]
        )
        if labels and len(labels) == len(rows):
            print("  " + " " * cell + " " + " ".join(s.rjust(cell) for s in labels))
        for i, row in enumerate(rows):
            head = labels[i].rjust(cell) + " " if labels and len(labels) == len(rows) else ""
            print("  " + head + " ".join(str(v).rjust(cell) for v in _row(row)))
    if report["skipped"]:
        print(f"{len(report['skipped'])} unreadable files skipped")


def _row(row: Any) -> list[Any]:
    return list(row) if isinstance(row, list) else [row]


def configure_predict(parser: argparse.ArgumentParser) -> None:
    """The ``visionatlas predict`` arguments."""
    parser.description = (
        "Write a trained model's predictions on IMAGES (files or folders) into a new folder: "
        "COCO JSON and PNG overlays of boxes, masks and class names for detection and "
        "instance segmentation; mask PNGs and overlays for semantic segmentation. SOURCE is "
        "a run folder (its best checkpoint), a checkpoint directory or NAME[@VERSION]."
    )
    parser.add_argument("source", metavar="SOURCE", help="RUN_DIR, checkpoint or NAME@VERSION")
    parser.add_argument("images", nargs="+", metavar="IMAGES", help="image files or folders")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="a new folder")
    parser.add_argument(
        "--score-threshold",
        type=float,
        default=0.5,
        metavar="S",
        help="leave out detections scoring below S (default 0.5)",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument(
        "--registry", metavar="DIR", help="model registry folder (default: $VISIONATLAS_REGISTRY)"
    )
    parser.set_defaults(handler=_predict)


def _predict(args: argparse.Namespace) -> int:
    prog = "visionatlas predict"
    from visionatlas_train.predict import predict

    try:
        result = predict(
            args.source,
            args.images,
            args.out,
            score_threshold=args.score_threshold,
            device=args.device,
            registry=args.registry,
        )
    except Exception as err:
        if not _reported(err):
            raise
        _print_error(prog, _describe(err))
        return EXIT_FAILURE
    counts = ", ".join(
        f"{value} {name}" for name, value in result.summary.items() if isinstance(value, int)
    )
    print(f"{result.source}: {counts}; wrote {result.out}")
    return EXIT_OK
