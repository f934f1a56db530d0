"""Training throughput and peak memory of ``visionatlas train`` against a plain PyTorch loop.

    uv run python benchmarks/train.py                    # resnet18, mobilenet_v3_small, fcos
    uv run python benchmarks/train.py --architectures fcos --pairs 3
    uv run python benchmarks/train.py --pairs 5 --check  # exit 1 when a target is missed

Both sides train the same catalog model on the same data (``builtin:digits`` at 64x64 for
the classifiers; ``builtin:shapes`` for ``fcos`` on a resnet18 at 128-160 px, which trains
as ``model(images, targets)``), read by the task plugin's reader with the same transforms,
collate and loader workers, with the same batch size, optimizer (AdamW at the catalog learning
rate and weight decay), precision (32) and number of batches. Each run is a fresh
process, and runs alternate (ours, plain, ours, plain, ...) so that drift in machine
load hits both. Throughput is timed from the first batch after ``--warmup`` batches to
the end of the epoch, so process start, data preparation, the trainer's setup and the
end-of-epoch checkpoint are outside the timing; validation and the batch-norm
recomputation are switched off on our side (the plain loop has neither). Peak memory is
the process's peak resident set size. Targets: throughput ratio >= 0.95 and peak memory
ratio <= 1.2.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Workload:
    """One model to time: its task, data and the settings both sides share."""

    task: str
    architecture: str
    source: str
    input_size: int
    batch_size: int | None = None
    model: dict[str, Any] = field(default_factory=dict)


WORKLOADS = {
    "resnet18": Workload("classification", "resnet18", "builtin:digits", 64),
    "mobilenet_v3_small": Workload("classification", "mobilenet_v3_small", "builtin:digits", 64),
    "fcos": Workload(
        "object_detection",
        "fcos",
        "builtin:shapes",
        224,
        batch_size=4,
        model={"backbone": "resnet18", "min_size": 128, "max_size": 160},
    ),
}
DEFAULT = ("resnet18", "mobilenet_v3_small", "fcos")


def _data(work: Workload, cache: str) -> Any:
    import visionatlas as va
    from visionatlas import DataRequest

    training = va.get_catalog().load_training(work.task)
    size = (work.input_size, work.input_size)
    request = DataRequest(input_size=size, cache_dir=Path(cache), seed=0)
    return training, training.prepare_data(work.source, request)


def _ours(work: Workload, cache: str, warmup: int) -> dict[str, float]:
    import lightning.pytorch as pl

    from visionatlas_train import train

    marks: dict[str, float] = {}

    class Clock(pl.Callback):
        def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, idx: int) -> None:
            if idx == warmup:
                marks["start"] = time.perf_counter()

        def on_train_batch_end(
            self, trainer: Any, module: Any, out: Any, batch: Any, idx: int
        ) -> None:
            marks["end"] = time.perf_counter()
            if idx >= warmup:
                marks["images"] = marks.get("images", 0) + len(batch[1])

    settings: dict[str, Any] = {
        "epochs": 1, "input_size": work.input_size, "cache_dir": cache, "precision": "32",
        "limit_val_batches": 1, "precise_bn_batches": 0, "model": work.model,
    }  # fmt: skip
    if work.batch_size is not None:
        settings["batch_size"] = work.batch_size
    with tempfile.TemporaryDirectory() as run:
        train(
            work.task, work.architecture, work.source, settings, out=Path(run) / "run",
            callbacks=[Clock()], verbose=False, progress_bar=False,
        )  # fmt: skip
    return marks


def _plain(work: Workload, cache: str, warmup: int) -> dict[str, float]:
    import torch
    from torch.utils.data import DataLoader

    import visionatlas as va
    from visionatlas import LossOptions

    training, data = _data(work, cache)
    spec = va.get_architecture(work.task, work.architecture).hyperparameters
    model = va.create_model(
        work.task, work.architecture, work.model or None, num_classes=data.num_outputs
    )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=spec.learning_rate, weight_decay=spec.weight_decay
    )
    loader = DataLoader(
        data.train, batch_size=work.batch_size or spec.batch_size, shuffle=True, num_workers=2,
        collate_fn=training.collate, persistent_workers=False,
    )  # fmt: skip
    with_targets = bool(getattr(training, "takes_targets", False))
    options = LossOptions()
    marks: dict[str, float] = {}
    model.train()
    for idx, (images, targets) in enumerate(loader):
        if idx == warmup:
            marks["start"] = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        outputs = model(images, targets) if with_targets else model(images)
        loss = training.loss(outputs, targets, options)
        loss.backward()
        optimizer.step()
        marks["end"] = time.perf_counter()
        if idx >= warmup:
            marks["images"] = marks.get("images", 0) + len(targets)
    return marks


def _child(side: str, name: str, cache: str, warmup: int) -> None:
    import torch

    torch.manual_seed(0)
    marks = (_ours if side == "ours" else _plain)(WORKLOADS[name], cache, warmup)
    seconds = marks["end"] - marks["start"]
    images = marks["images"]
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"images_per_s": images / seconds, "peak_mib": peak_kib / 1024}))


def _run(side: str, architecture: str, cache: str, warmup: int) -> dict[str, float]:
    command = [
        sys.executable, __file__, "--child", side, "--architectures", architecture,
        "--cache", cache, "--warmup", str(warmup),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{side} {architecture} failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architectures", nargs="+", default=list(DEFAULT), choices=WORKLOADS)
    parser.add_argument("--pairs", type=int, default=7, help="alternating pairs per model")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches per run")
    parser.add_argument("--cache", default=None, help="dataset cache (default: a temp dir)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--child", choices=("ours", "plain"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    cache = args.cache or tempfile.mkdtemp(prefix="visionatlas-bench-")
    if args.child:
        _child(args.child, args.architectures[0], cache, args.warmup)
        return 0
    for name in args.architectures:  # write the datasets once, outside any timing
        _data(WORKLOADS[name], cache)
    missed = False
    for architecture in args.architectures:
        ours, plain = [], []
        for pair in range(args.pairs):
            order = ("ours", "plain") if pair % 2 == 0 else ("plain", "ours")
            for side in order:
                (ours if side == "ours" else plain).append(
                    _run(side, architecture, cache, args.warmup)
                )
        speed = [o["images_per_s"] / p["images_per_s"] for o, p in zip(ours, plain, strict=True)]
        memory = [o["peak_mib"] / p["peak_mib"] for o, p in zip(ours, plain, strict=True)]
        ratio, mem = statistics.median(speed), statistics.median(memory)
        ok = ratio >= 0.95 and mem <= 1.2
        missed |= not ok
        print(
            f"{architecture:<20} ours {statistics.median(o['images_per_s'] for o in ours):7.1f}"
            f" img/s  plain {statistics.median(p['images_per_s'] for p in plain):7.1f} img/s"
            f"  ratio {ratio:.3f} (>= 0.95)  peak memory ours "
            f"{statistics.median(o['peak_mib'] for o in ours):6.0f} MiB  plain "
            f"{statistics.median(p['peak_mib'] for p in plain):6.0f} MiB  ratio {mem:.3f}"
            f" (<= 1.2)  {'ok' if ok else 'MISSED'}"
        )
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.exit(main())
