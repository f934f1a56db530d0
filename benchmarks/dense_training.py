"""Quality-within-time targets of detection and segmentation training on the built-in sets.

    uv run python benchmarks/dense_training.py fcos          # box mAP@0.5 >= 0.7 in 15 min
    uv run python benchmarks/dense_training.py deeplabv3     # mean IoU >= 0.7 in 10 min
    uv run python benchmarks/dense_training.py maskrcnn      # mask mAP, reported
    uv run python benchmarks/dense_training.py rotated_fcos  # rotated mAP@0.5 >= 0.7 in 15 min
    uv run python benchmarks/dense_training.py fcos --check  # exit 1 when a target is missed

Each recipe is one ``visionatlas train`` command on ``builtin:shapes`` from random
initialisation (``pretrained`` off, as the catalog's any-backbone architectures default),
run as a fresh process; the wall time is that process's, from start to exit (dataset
writing excluded: it is written once beforehand), validation and checkpoints included. The
figure is the best epoch's validation metric, which the run reports and keeps as its best
checkpoint. Nothing else should run on the machine meanwhile.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Recipe:
    """One training command and its target: ``metric`` at least ``target`` in ``minutes``."""

    task: str
    architecture: str
    sets: tuple[str, ...]
    metric: str
    target: float | None
    minutes: float


RECIPES = {
    "fcos": Recipe(
        "object_detection",
        "fcos",
        (
            'model.backbone="resnet18"',
            "model.min_size=192",
            "model.max_size=320",
            "model.fpn_channels=128",
            "model.score_thresh=0.05",
            'optimizer.name="adamw"',
            "learning_rate=0.001",
            "weight_decay=0.0001",
            "batch_size=4",
            "epochs=36",
            "warmup_epochs=1",
            "gradient_clip=10.0",
            'precision="bf16-mixed"',
        ),
        "val/map_50",
        0.7,
        15,
    ),
    "deeplabv3": Recipe(
        "segmentation",
        "deeplabv3",
        (
            'model.backbone="resnet18"',
            "model.output_stride=16",
            "input_size=[160,160]",
            'optimizer.name="adamw"',
            "learning_rate=0.001",
            "batch_size=4",
            "epochs=17",
            'augment="flip,colour"',
            "warmup_epochs=1",
            'precision="bf16-mixed"',
        ),
        "val/miou",
        0.7,
        10,
    ),
    "maskrcnn": Recipe(
        "instance_segmentation",
        "maskrcnn",
        (
            'model.backbone="resnet18"',
            "model.min_size=160",
            "model.max_size=256",
            'optimizer.name="adamw"',
            "learning_rate=0.0005",
            "batch_size=4",
            "epochs=24",
            "warmup_epochs=1",
            "gradient_clip=10.0",
            'precision="bf16-mixed"',
        ),
        "val/segm_map_50",
        None,
        15,
    ),
    "rotated_fcos": Recipe(
        "oriented_object_detection",
        "rotated_fcos",
        (
            'model.backbone="resnet18"',
            "model.min_size=160",
            "model.max_size=256",
            "model.fpn_channels=128",
            'optimizer.name="adamw"',
            "learning_rate=0.001",
            "weight_decay=0.0001",
            "batch_size=4",
            "epochs=20",
            "warmup_epochs=1",
            "gradient_clip=10.0",
            'precision="bf16-mixed"',
        ),
        "val/map_50",
        0.7,
        15,
    ),
}


def _command(recipe: Recipe, run: Path, cache: Path) -> list[str]:
    command = [
        "visionatlas", "train", recipe.task, recipe.architecture, "builtin:shapes",
        "--out", str(run), "--no-progress", "--set", f'cache_dir="{cache}"',
    ]  # fmt: skip
    for setting in recipe.sets:
        command += ["--set", setting]
    return command


def _write_dataset(recipe: Recipe, cache: Path) -> None:
    import visionatlas as va
    from visionatlas import DataRequest

    training = va.get_catalog().load_training(recipe.task)
    training.prepare_data("builtin:shapes", DataRequest(cache_dir=cache, seed=0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", choices=RECIPES)
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: temp)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe setting (repeatable)")  # fmt: skip
    parser.add_argument("--check", action="store_true", help="exit 1 if the target is missed")
    args = parser.parse_args()
    recipe = RECIPES[args.recipe]
    given = {setting.partition("=")[0] for setting in args.sets}  # overrides replace
    kept = tuple(s for s in recipe.sets if s.partition("=")[0] not in given)
    recipe = Recipe(recipe.task, recipe.architecture, (*kept, *args.sets),
                    recipe.metric, recipe.target, recipe.minutes)  # fmt: skip
    base = Path(tempfile.mkdtemp(prefix="visionatlas-dense-"))
    cache, run = base / "cache", args.out or base / "run"
    _write_dataset(recipe, cache)
    command = _command(recipe, run, cache)
    print("$ " + shlex.join(command), flush=True)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "visionatlas", *command[1:]], check=False, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        print(f"the run failed (exit {done.returncode})", file=sys.stderr)
        return 1
    rows = list(csv.DictReader(io.StringIO((run / "metrics.csv").read_text())))
    values = [float(r[recipe.metric]) for r in rows if r.get(recipe.metric)]
    best = max(values)
    epoch = rows[[float(r[recipe.metric]) if r.get(recipe.metric) else -1 for r in rows].index(
        best)]["epoch"]  # fmt: skip
    within = seconds <= recipe.minutes * 60
    verdict = ""
    ok = True
    if recipe.target is not None:
        ok = best >= recipe.target and within
        verdict = f" (target >= {recipe.target} in {recipe.minutes:g} min: " + (
            "ok)" if ok else "MISSED)"
        )
    print(
        f"{recipe.architecture}: best {recipe.metric} {best:.3f} at epoch {epoch} of "
        f"{len(rows)}; wall {seconds / 60:.1f} min{verdict}; run in {run}"
    )
    extras = [k for k in rows[-1] if k.startswith("val/") and k != recipe.metric]
    best_row = rows[values.index(best)] if len(values) == len(rows) else rows[-1]
    print("  " + ", ".join(f"{k} {float(best_row[k]):.3f}" for k in extras if best_row.get(k)))
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.exit(main())
