"""The run folder a person can read (CONVENTIONS 19), and the callback that fills it.

::

    RUN_DIR/
      config.json        task, architecture, data and the resolved training config
      labels.json        the class names (or target names) the model predicts
      metrics.csv        one row per epoch: epoch, step, lr, time, train/ and val/ metrics
      plots/loss.png     train and validation loss per epoch
      plots/<metric>.png every other metric per epoch
      val_<matrix>.csv   non-scalar metrics (a confusion matrix) of the best epoch
      checkpoints/last   the latest epoch (visionatlas checkpoint directories)
      checkpoints/best   the best epoch by the task's monitored metric
      summary.json       the outcome: best epoch and metrics, skipped files, timings

Every file is replaced atomically, so a run killed at any moment leaves each file whole.
Only the process of global rank 0 writes.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from visionatlas.lifecycle.files import write_bytes_atomic
from visionatlas_train.module import is_scalar

__all__ = ["RunCheckpoint", "RunFolder", "RunRecorder", "format_epoch_line"]

CONFIG_NAME = "config.json"
LABELS_NAME = "labels.json"
METRICS_NAME = "metrics.csv"
SUMMARY_NAME = "summary.json"
CHECKPOINTS = "checkpoints"
_FIXED = ("epoch", "step", "lr", "time_s")


def _json(data: Any) -> bytes:
    return (json.dumps(data, indent=2, allow_nan=False, default=str) + "\n").encode("utf-8")


def finite(value: Any) -> Any:
    """``value`` with non-finite floats as strings ("nan", "inf"), for strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


class RunFolder:
    """Writes the files of a run folder (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def last(self) -> Path:
        return self.checkpoints / "last"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best"

    def write_json(self, name: str, data: Any) -> Path:
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(target, _json(finite(data)))
        return target

    def read_json(self, name: str) -> Any:
        return json.loads((self.path / name).read_text(encoding="utf-8"))

    def write_metrics(
        self, history: Sequence[Mapping[str, Any]], *, leading: Sequence[str] = _FIXED
    ) -> Path:
        """``metrics.csv``: one row per epoch (or per step of a custom fit, with
        ``leading=("step",)``); the ``leading`` columns first, then the metrics in a
        stable order."""
        names: list[str] = []
        for row in history:
            names += [k for k in row if k not in leading and k not in names]
        columns = [*leading, *sorted(names, key=_metric_order)]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        for row in history:
            writer.writerow([_cell(row.get(c)) for c in columns])
        target = self.path / METRICS_NAME
        write_bytes_atomic(target, buffer.getvalue().encode("utf-8"))
        return target

    def write_matrix(
        self, name: str, matrix: Sequence[Sequence[Any]], labels: Sequence[str]
    ) -> Path:
        """A non-scalar metric as CSV (a header of labels when they fit)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        rows = [list(r) if isinstance(r, (list, tuple)) else [r] for r in matrix]
        square = len(labels) == len(rows) and all(len(r) == len(labels) for r in rows)
        if square:
            writer.writerow(["", *labels])
        for i, row in enumerate(rows):
            writer.writerow([labels[i], *row] if square else row)
        target = self.path / f"{name.replace('/', '_')}.csv"
        write_bytes_atomic(target, buffer.getvalue().encode("utf-8"))
        return target

    def write_plots(self, history: Sequence[Mapping[str, Any]], *, x: str = "epoch") -> list[Path]:
        """``plots/loss.png`` and one PNG per other metric (matplotlib, Agg canvas).

        A metric ``STAGE/NAME`` goes into ``NAME.png`` with one line per ``STAGE``, over
        the column ``x`` (``epoch``, or ``step`` for a custom fit).
        """
        if not history:
            return []
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        metrics: dict[str, list[str]] = {}
        for row in history:
            for key in row:
                if "/" in key:
                    _stage, name = key.split("/", 1)
                    keys = metrics.setdefault(name, [])
                    if key not in keys:
                        keys.append(key)
        directory = self.path / "plots"
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for name in sorted(metrics, key=lambda n: (n != "loss", n)):
            figure = Figure(figsize=(6, 4), dpi=100)
            FigureCanvasAgg(figure)
            axes = figure.add_subplot()
            for key in sorted(metrics[name]):
                points = [
                    (row[x], row[key])
                    for row in history
                    if isinstance(row.get(key), (int, float)) and math.isfinite(row[key])
                ]
                if points:
                    xs, ys = zip(*points, strict=True)
                    marker = "o" if len(points) <= 50 else None  # per epoch, not per step
                    axes.plot(xs, ys, marker=marker, label=key)
            axes.set_xlabel(x)
            axes.set_ylabel(name)
            axes.set_title(name)
            axes.grid(True, alpha=0.3)
            axes.legend()
            figure.tight_layout()
            target = directory / f"{name.replace('/', '_')}.png"
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png")
            write_bytes_atomic(target, buffer.getvalue())
            written.append(target)
        return written


def _metric_order(name: str) -> tuple[int, bool, str]:
    stage = name.split("/", 1)[0]
    return ({"train": 0, "val": 1}.get(stage, 2), not name.endswith("/loss"), name)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def format_epoch_line(row: Mapping[str, Any], epochs: int) -> str:
    """``epoch 3/10  train/loss 0.4123  val/loss 0.3311  val/acc1 0.9120  lr 9.5e-04  14.2s``."""
    parts = [f"epoch {row['epoch']}/{epochs}"]
    for key in sorted((k for k in row if k not in _FIXED), key=_metric_order):
        value = row[key]
        if isinstance(value, float):
            parts.append(f"{key} {value:.4f}")
    parts.append(f"lr {row['lr']:.2e}")
    parts.append(f"{row['time_s']:.1f}s")
    return "  ".join(parts)


class RunRecorder(Callback):
    """Record one row per epoch, write ``metrics.csv`` and print one line per epoch.

    Its state (the rows, the best epoch and its matrices) is saved in every checkpoint, so
    a resumed run rewrites ``metrics.csv`` exactly as of its checkpoint. ``folder`` is
    ``None`` on processes that do not write (global rank other than 0).
    """

    def __init__(
        self,
        folder: RunFolder | None,
        *,
        epochs: int,
        monitor: str,
        mode: str,
        stream: TextIO | None = None,
        verbose: bool = True,
    ) -> None:
        self.folder = folder
        self.epochs = epochs
        self.monitor = monitor
        self.mode = mode
        self.stream = stream
        self.verbose = verbose
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.best_matrices: dict[str, Any] = {}
        self._started = time.perf_counter()

    @property
    def state_key(self) -> str:
        return "RunRecorder"

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "best": self.best, "best_matrices": self.best_matrices}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [dict(row) for row in state_dict.get("history", [])]
        self.best = state_dict.get("best")
        self.best_matrices = dict(state_dict.get("best_matrices") or {})

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.folder is not None and self.history:  # resumed: the CSV as of the checkpoint
            self.folder.write_metrics(self.history)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        end_epoch = getattr(pl_module, "end_train_epoch", None)
        if callable(end_epoch):
            end_epoch()
        row: dict[str, Any] = {
            "epoch": trainer.current_epoch + 1,
            "step": trainer.global_step,
            "lr": _learning_rate(trainer),
            "time_s": round(time.perf_counter() - self._started, 3),
        }
        for name, value in trainer.callback_metrics.items():
            if is_scalar(value) and "/" in name:
                row[name] = float(value)
        self.history.append(row)
        monitored = row.get(self.monitor)
        if isinstance(monitored, float) and self._improved(monitored):
            matrices = getattr(pl_module, "matrices", {})
            self.best = {"epoch": row["epoch"], "monitor": self.monitor, "value": monitored}
            self.best_matrices = {
                k: v.tolist() for k, v in matrices.items() if k.startswith("val/")
            }
        if self.folder is not None:
            self.folder.write_metrics(self.history)
            if self.verbose:
                print(
                    format_epoch_line(row, self.epochs), file=self.stream or sys.stderr, flush=True
                )

    def _improved(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        best = float(self.best["value"])
        return value > best if self.mode == "max" else value < best


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` writing ``checkpoints/NAME`` directories (no ``.ckpt`` suffix)."""

    FILE_EXTENSION = ""


def _learning_rate(trainer: pl.Trainer) -> float:
    if not trainer.optimizers:
        return float("nan")
    return float(trainer.optimizers[0].param_groups[0]["lr"])
