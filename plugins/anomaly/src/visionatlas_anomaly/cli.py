"""``visionatlas anomaly``: fit, predict, benchmark and dense-speed subcommands."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

__all__ = ["configure"]

PROG = "visionatlas anomaly"
EXIT_FAILURE, EXIT_USAGE = 1, 2
MAX_IMAGE_SIZE = 4096
"""Largest ``--image-size``: a 4096x4096 image is already 200 MB as float32."""


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``fit``, ``predict``, ``benchmark`` and ``speed`` subcommands to ``parser``."""
    parser.set_defaults(handler=_help(parser))
    commands = parser.add_subparsers(dest="anomaly_command", metavar="COMMAND")

    fit = commands.add_parser(
        "fit", help="fit a detector on normal images", description=_FIT_DESCRIPTION
    )
    fit.add_argument("data_dir", type=Path, help="MVTec AD category folder or image folder")
    fit.add_argument("--out", type=Path, required=True, help="directory (or .safetensors) to write")
    _add_model_options(fit)
    fit.set_defaults(handler=_fit)

    predict = commands.add_parser("predict", help="score images with a fitted detector")
    predict.add_argument("model", type=Path, help="saved detector (directory or .safetensors)")
    predict.add_argument("images", type=Path, nargs="+", help="image files or folders")
    predict.add_argument("--out", type=Path, required=True, help="output directory")
    predict.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:N, mps or xpu (default: the saved one)"
    )
    predict.add_argument("--no-overlays", action="store_true", help="skip the PNG overlays")
    predict.set_defaults(handler=_predict)

    from visionatlas_anomaly.presets import PRESETS
    from visionatlas_anomaly.synthetic import CATEGORIES

    bench = commands.add_parser(
        "benchmark", help="generate the synthetic benchmark, fit and evaluate every category"
    )
    bench.add_argument("--out", type=Path, default=Path("anomaly-benchmark"), help="output dir")
    bench.add_argument(
        "--preset", choices=sorted(PRESETS), default="default", help="settings preset"
    )
    bench.add_argument(
        "--quick", action="store_const", const="quick", dest="preset", help="--preset quick"
    )
    bench.add_argument(
        "--categories", nargs="+", choices=sorted(CATEGORIES), default=None, help="categories"
    )
    bench.add_argument("--seed", type=int, default=0, help="data and training seed")
    bench.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a detector option (JSON value), e.g. --set width=0.5",
    )
    bench.add_argument("--save-models", action="store_true", help="save each fitted detector")
    bench.add_argument("--json", action="store_true", help="print the results as JSON")
    bench.set_defaults(handler=_benchmark)

    speed = commands.add_parser(
        "speed", help="dense extraction versus patch-by-patch evaluation (equality and speed)"
    )
    speed.add_argument("--image-size", type=int, default=256, help="image side (default 256)")
    speed.add_argument("--patch-sizes", type=int, nargs="+", default=[17, 33, 65])
    speed.add_argument(
        "--sampled-pixels",
        type=int,
        default=1024,
        help="patches evaluated patch-wise and extrapolated to the whole image",
    )
    speed.add_argument(
        "--patch-batch", type=int, default=1, help="patches per patch-wise call (default 1)"
    )
    speed.add_argument(
        "--width", type=float, default=1.0, help="hidden-channel multiplier (1.0: the paper's)"
    )
    speed.add_argument(
        "--no-nnpack",
        action="store_true",
        help="time dense passes with oneDNN's direct convolutions only",
    )
    speed.set_defaults(handler=_speed)


_FIT_DESCRIPTION = (
    "Fit Uninformed Students on anomaly-free images. DATA_DIR is an MVTec AD category "
    "(train/good is used, and validation/good for calibration when present) or a folder of "
    "normal images (a validation fraction is held out)."
)


def _help(parser: argparse.ArgumentParser) -> Any:
    def show(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return show


def _image_size(text: str) -> int:
    try:
        size = int(text)
    except ValueError:
        size = 0
    if not 1 <= size <= MAX_IMAGE_SIZE:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of pixels from 1 to {MAX_IMAGE_SIZE}, got {text!r}"
        )
    return size


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--image-size",
        type=_image_size,
        default=None,
        metavar="SIZE",
        help="resize images to SIZE x SIZE (saved with the detector; predict resizes alike)",
    )
    parser.add_argument("--patch-sizes", type=int, nargs="+", default=None, help="e.g. 17 33 65")
    parser.add_argument("--students", type=int, default=None, help="students per patch size")
    parser.add_argument("--teacher-steps", type=int, default=None)
    parser.add_argument("--student-steps", type=int, default=None)
    parser.add_argument("--width", type=float, default=None, help="hidden channel multiplier")
    parser.add_argument(
        "--teacher-weights",
        type=Path,
        default=None,
        help="ImageNet ResNet-18 weights file for teacher distillation",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N, mps or xpu")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--config", type=Path, default=None, help="JSON file of detector options")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _config_from(args: argparse.Namespace) -> Any:
    from visionatlas_anomaly.config import UninformedStudentsConfig

    settings: dict[str, Any] = {}
    if args.config is not None:
        settings.update(json.loads(Path(args.config).read_text(encoding="utf-8")))
    flags = {
        "patch_sizes": args.patch_sizes,
        "num_students": args.students,
        "teacher_steps": args.teacher_steps,
        "student_steps": args.student_steps,
        "width": args.width,
        "weights_path": args.teacher_weights,
        "device": args.device,
        "seed": args.seed,
    }
    settings.update({k: v for k, v in flags.items() if v is not None})
    if args.no_progress:
        settings["progress"] = False
    return UninformedStudentsConfig.model_validate(settings)


def _fail(message: str, code: int = EXIT_FAILURE) -> int:
    """Print ``message`` as one error line; return ``code`` (1: failure, 2: usage)."""
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def _usage(message: str) -> int:
    return _fail(message, EXIT_USAGE)


def _unwritable(path: Path, *, directory: bool) -> str | None:
    """Why ``path`` cannot be written as an output (file or directory), or ``None``."""
    if directory and path.exists() and not path.is_dir():
        return f"--out {path} exists and is not a directory"
    if not directory and path.is_dir():
        return f"--out {path} is a directory; name a .safetensors file or a new directory"
    parent = path if directory else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        return f"--out {path} cannot be written: {parent} is not a writable directory"
    return None


def _device_error(name: str | None) -> str | None:
    """The reason torch cannot use device ``name`` here (and what it accepts), or ``None``."""
    from visionatlas_anomaly.devices import resolve_device
    from visionatlas_anomaly.errors import DeviceError

    if name is None:
        return None
    try:
        resolve_device(name)
    except DeviceError as err:
        return str(err)
    return None


def _fit(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from visionatlas_anomaly.config import validation_summary
    from visionatlas_anomaly.data import DatasetLayoutError, image_files, load_images
    from visionatlas_anomaly.errors import NonFiniteError
    from visionatlas_anomaly.model import UninformedStudents

    problem = _device_error(args.device)
    if problem is None:
        problem = _unwritable(args.out, directory=args.out.suffix != ".safetensors")
    if problem is not None:
        return _usage(problem)
    try:
        config = _config_from(args)
    except ValidationError as err:
        return _usage(f"invalid detector options: {validation_summary(err)}")
    except (ValueError, OSError) as err:
        return _usage(f"cannot read --config {args.config}: {err}")
    problem = _device_error(config.device)
    if problem is not None:
        return _usage(problem)
    size = None if args.image_size is None else (args.image_size, args.image_size)
    root: Path = args.data_dir
    try:
        if (root / "train" / "good").is_dir():
            normal = load_images(image_files(root / "train" / "good"), size)
            val_dir = root / "validation" / "good"
            val_files = image_files(val_dir) if val_dir.is_dir() else []
            validation = load_images(val_files, tuple(normal.shape[-2:])) if val_files else None  # type: ignore[arg-type]
        else:
            files = image_files(root)
            if not files:
                raise DatasetLayoutError(
                    f"{root} holds no images and no train/good folder (MVTec AD layout)"
                )
            normal, validation = load_images(files, size), None
        detector = UninformedStudents(config).fit(normal, validation)
    except (DatasetLayoutError, ValueError, NonFiniteError) as err:
        return _fail(str(err))
    try:
        path = detector.save(args.out)
    except OSError as err:
        return _usage(f"cannot write --out {args.out}: {err}")
    report = detector.fit_report.as_dict() if detector.fit_report else {}
    print(
        f"fitted on {report.get('train_images')} images ({report.get('teacher_source')} "
        f"teachers), threshold {detector.threshold:.4f}, in {report.get('seconds')} s; "
        f"saved to {path}"
    )
    return 0


def _expand(paths: list[Path]) -> list[Path]:
    from visionatlas_anomaly.data import image_files

    files: list[Path] = []
    for path in paths:
        files.extend(image_files(path) if path.is_dir() else [path])
    return files


def _load(path: Path, device: str | None) -> Any:
    """Load a detector, printing an unknown-image-size warning as one line."""
    from visionatlas_anomaly.errors import UnknownImageSizeWarning
    from visionatlas_anomaly.model import UninformedStudents

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnknownImageSizeWarning)
        detector = UninformedStudents.load(path, device=device)
    for warning in caught:
        if issubclass(warning.category, UnknownImageSizeWarning):
            print(f"{PROG}: warning: {warning.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return detector


def _predict(args: argparse.Namespace) -> int:
    import numpy as np

    from visionatlas_anomaly.data import DatasetLayoutError
    from visionatlas_anomaly.errors import DeviceError, NonFiniteError
    from visionatlas_anomaly.visualize import save_overlay

    out: Path = args.out
    problem = _device_error(args.device) or _unwritable(out, directory=True)
    if problem is not None:
        return _usage(problem)
    try:
        detector = _load(args.model, args.device)
    except DeviceError as err:
        return _usage(str(err))
    except (ValueError, FileNotFoundError) as err:
        return _fail(str(err))
    try:
        files = _expand(args.images)
        if not files:
            raise DatasetLayoutError(f"no images found in {', '.join(map(str, args.images))}")
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise DatasetLayoutError(f"no such image files: {', '.join(missing)}")
        images = detector.read_images(files)
        prediction = detector.predict(images)
    except (DatasetLayoutError, ValueError, FileNotFoundError, RuntimeError, NonFiniteError) as err:
        return _fail(str(err))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return _usage(f"cannot write --out {out}: {err}")
    names = [f.stem for f in files]
    maps = prediction.anomaly_maps.numpy()
    np.savez_compressed(out / "anomaly_maps.npz", **dict(zip(names, maps, strict=True)))
    threshold = prediction.threshold
    records = [
        {"image": str(f), "score": float(s), "anomalous": bool(s > threshold)}
        for f, s in zip(files, prediction.scores.tolist(), strict=True)
    ]
    summary = {"threshold": threshold, "images": records}
    (out / "scores.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if not args.no_overlays:
        high = max(threshold, float(prediction.anomaly_maps.max())) if len(files) else threshold
        for name, image, amap in zip(names, images, prediction.anomaly_maps, strict=True):
            save_overlay(out / f"{name}_overlay.png", image, amap, low=0.0, high=high)
    for record in records:
        flag = "ANOMALOUS" if record["anomalous"] else "normal"
        print(f"{record['score']:10.4f}  {flag:<9}  {record['image']}")
    print(f"threshold {threshold:.4f}; maps, scores.json and overlays in {out}")
    return 0


def _parse_overrides(items: list[str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def _benchmark(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from visionatlas_anomaly.benchmark import run_benchmark
    from visionatlas_anomaly.config import validation_summary
    from visionatlas_anomaly.errors import DeviceError, NonFiniteError
    from visionatlas_anomaly.presets import PRESETS

    try:
        overrides = _parse_overrides(args.overrides)
        log = None if args.json else (lambda line: print(line, flush=True))
        if log is not None:
            log(f"preset {args.preset}: {PRESETS[args.preset].description}")
        result = run_benchmark(
            args.out,
            preset=args.preset,
            categories=args.categories,
            overrides=overrides,
            seed=args.seed,
            save_models=args.save_models,
            log=log,
        )
    except ValidationError as err:
        return _usage(f"invalid detector options: {validation_summary(err)}")
    except DeviceError as err:
        return _usage(str(err))
    except (ValueError, NonFiniteError) as err:
        return _fail(str(err))
    (Path(args.out) / "results.json").write_text(
        json.dumps(result.as_dict(), indent=2) + "\n", encoding="utf-8"
    )
    print(json.dumps(result.as_dict(), indent=2) if args.json else result.table())
    return 0


def _speed(args: argparse.Namespace) -> int:
    from visionatlas_anomaly.speed import measure_dense_speed

    for patch_size in args.patch_sizes:
        try:
            result = measure_dense_speed(
                patch_size,
                image_size=args.image_size,
                sampled_pixels=args.sampled_pixels,
                patch_batch=args.patch_batch,
                width=args.width,
                nnpack=not args.no_nnpack,
            )
        except ValueError as err:
            return _fail(str(err))
        print(result.row(), flush=True)
    return 0
