"""Try exporting every classification and regression architecture; record what works.

``--task segmentation`` covers the segmentation plugin's architectures too.

Each architecture is built with random weights, its batch-norm statistics taken from
random images (so that outputs depend on the input), exported to ONNX at 64x64 with a
dynamic batch, run in onnxruntime on a batch of 3 and compared with PyTorch (atol 1e-4,
rtol 1e-3). Where that tolerance is exceeded, the model's own float32 rounding is measured
too (PyTorch float32 against float64 on the same images): deep random networks amplify
rounding, and an export within 4x that noise is as faithful as float32 PyTorch itself.
With ``--dynamic-size`` a second export leaves the height and width free (example 64x96)
and is checked at 96x128; with ``--torch-export`` the model is also captured with
``torch.export`` (dynamic batch). One JSON line per architecture goes to ``--out`` (rows
already there are skipped, so a run can resume); ``--markdown`` prints the table used in
``docs/export.md``.

    uv run python core/scripts/export_matrix.py --out cls.jsonl --dynamic-size --torch-export
    uv run python core/scripts/export_matrix.py --markdown cls.jsonl
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

SIZE = 64
DYNAMIC_EXAMPLE = (64, 96)  # not square, so that the export does not assume height == width
OTHER_SIZE = (96, 128)
TASKS = {
    "classification": (None, 3),
    "regression": ({"num_outputs": 2}, None),
    "segmentation": (None, 3),
}
DEFAULT_TASKS = ("classification", "regression")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:200]


def _calibrate(model: Any, size: int) -> float:
    """Batch-norm statistics from random images; return the spread of the outputs.

    Freshly initialized models keep BN's initial statistics, with which some families
    (EfficientNet, MobileNetV3) give almost the same output for every image; comparing
    exports on such outputs would prove little. Returns the largest difference between the
    outputs for two different images (0 would make the comparison vacuous).
    """
    import torch
    from torch import nn

    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for module in norms:
            module.train()
            module.momentum = None  # a cumulative average over the batches below
            module.reset_running_stats()
        for _ in range(3):
            model(torch.rand(4, 3, size, size, generator=generator))
        model.eval()
        out = model(torch.rand(2, 3, size, size, generator=generator))
    return float((out[0] - out[1]).abs().max())


def _float32_noise(model: Any, images: Any) -> float:
    """How far the model's float32 outputs are from its float64 outputs on ``images``."""
    import copy

    import torch

    with torch.no_grad():
        single = model(images)
        double = copy.deepcopy(model).double()(images.double())
    return float((single.double() - double).abs().max())


def _stage(row: dict[str, Any], key: str, work: Any) -> None:
    """Run one stage; record ``ok`` and its figures, or the failure's first line."""
    from visionatlas.lifecycle.export import ExportMismatchError

    try:
        row.update({key: "ok", **work()})
    except ExportMismatchError as err:
        row.update({key: "mismatch", f"{key}_max_abs_diff": err.max_abs_diff})
    except Exception as err:  # any failure of the exporter or the runtime is a result here
        row.update({key: "fail", f"{key}_error": _first_line(err.__cause__ or err)})


def _one(task: str, name: str, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    import torch

    import visionatlas as va
    from visionatlas.lifecycle.export import example_images
    from visionatlas.lifecycle.onnx_export import check_onnx

    config, num_classes = TASKS[task]
    row: dict[str, Any] = {"task": task, "architecture": name}
    torch.manual_seed(0)
    model = va.create_model(task, name, config, num_classes).eval()
    row["output_spread"] = _calibrate(model, SIZE)
    probe = example_images(model, input_size=SIZE, batch_size=3)

    def onnx() -> dict[str, Any]:
        va.export_onnx(model, scratch / "m.onnx", input_size=SIZE)
        return {"onnx_max_abs_diff": check_onnx(model, scratch / "m.onnx", probe)}

    started = time.perf_counter()
    _stage(row, "onnx", onnx)
    row["onnx_seconds"] = round(time.perf_counter() - started, 1)
    if row["onnx"] == "mismatch":  # is it the export, or float32 itself?
        row["float32_noise"] = _float32_noise(model, probe)

    def dynamic_size() -> dict[str, Any]:
        va.export_onnx(model, scratch / "d.onnx", input_size=DYNAMIC_EXAMPLE, dynamic_size=True)
        images = example_images(model, input_size=OTHER_SIZE, batch_size=2)
        return {"dynamic_size_max_abs_diff": check_onnx(model, scratch / "d.onnx", images)}

    if args.dynamic_size and row["onnx"] != "fail":
        _stage(row, "dynamic_size", dynamic_size)
        if row["dynamic_size"] == "mismatch":
            images = example_images(model, input_size=OTHER_SIZE, batch_size=2)
            row["dynamic_size_float32_noise"] = _float32_noise(model, images)

    def program() -> dict[str, Any]:
        exported = va.export_program(model, input_size=SIZE)
        with torch.no_grad():
            diff = float((exported.module()(probe) - model(probe)).abs().max())
        return {"torch_export_max_abs_diff": diff}

    if args.torch_export:
        _stage(row, "torch_export", program)
    for file in scratch.iterdir():
        file.unlink()
    return row


def run(args: argparse.Namespace) -> None:
    import visionatlas as va

    done: set[tuple[str, str]] = set()
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            data = json.loads(line)
            done.add((data["task"], data["architecture"]))
    with tempfile.TemporaryDirectory() as tmp, args.out.open("a") as sink:
        for task in args.task or DEFAULT_TASKS:
            for name in va.list_architectures(task, args.pattern):
                if (task, name) in done:
                    continue
                try:
                    row = _one(task, name, args, Path(tmp))
                except Exception as err:  # building failed: record and go on
                    traceback.print_exc()
                    row = {"task": task, "architecture": name, "build_error": _first_line(err)}
                print(json.dumps(row), file=sink, flush=True)
                print(json.dumps(row), file=sys.stderr, flush=True)
                gc.collect()


def _cell(row: dict[str, Any], key: str) -> str:
    status = row.get(key)
    diff = row.get(f"{key}_max_abs_diff")
    if status is None:
        return "-"
    if status == "ok":
        return f"ok ({diff:.1e})" if diff is not None else "ok"
    if status == "mismatch":
        noise = row.get("float32_noise" if key == "onnx" else f"{key}_float32_noise")
        if noise is not None and diff <= 4 * noise:  # as close as float32 PyTorch is
            return f"ok, within float32 noise ({diff:.1e} vs {noise:.1e})"
        return f"differs by {diff:.2g}" + (f" (float32 noise {noise:.2g})" if noise else "")
    return f"no: {row.get(f'{key}_error', '')}"


def markdown(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    headers = ["Task", "Architecture", "ONNX (max abs diff)", "output spread"]
    print("| " + " | ".join([*headers, "dynamic H, W", "torch.export"]) + " |")
    print("|" + "---|" * (len(headers) + 2))
    for row in sorted(rows, key=lambda r: (r["task"], r["architecture"])):
        spread = row.get("output_spread")
        cells = [
            row["task"],
            row["architecture"],
            _cell(row, "onnx"),
            "-" if spread is None else f"{spread:.2g}",
            _cell(row, "dynamic_size"),
            _cell(row, "torch_export"),
        ]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("export_matrix.jsonl"))
    parser.add_argument("--task", action="append", choices=list(TASKS))
    parser.add_argument("--pattern", help="glob over architecture names")
    parser.add_argument("--dynamic-size", action="store_true")
    parser.add_argument("--torch-export", action="store_true")
    parser.add_argument("--markdown", type=Path, metavar="JSONL", help="print the table and exit")
    args = parser.parse_args()
    if args.markdown:
        markdown(args.markdown)
        return
    run(args)


if __name__ == "__main__":
    main()
