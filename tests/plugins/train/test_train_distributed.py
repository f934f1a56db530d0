"""Two processes with DDP (gloo, CPU) train like one process with the same global batch."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from visionatlas import Catalog
from visionatlas.lifecycle.checkpoint import load_checkpoint

SCRIPT = Path(__file__).parent / "ddp_toy_run.py"
TOLERANCE = 1e-4
"""Largest weight difference allowed after 2 epochs: the runs differ only in the order of
floating-point sums (gradients averaged over two processes). The model normalizes with
group norm, whose statistics do not depend on how a batch is split (batch norm's do, and
torch's SyncBatchNorm needs GPUs)."""


def _run(out: Path, devices: int, batch: int) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(out), str(devices), str(batch)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(toy_catalog: Catalog, tmp_path: Path) -> None:
    _run(tmp_path / "one", devices=1, batch=8)
    double = _run(tmp_path / "two", devices=2, batch=4)  # the same global batch of 8
    reports = [json.loads(line) for line in double.stdout.splitlines() if line.startswith("{")]
    assert sorted(r["rank"] for r in reports) == ["0", "1"]  # both processes trained
    assert all(r["epochs"] == 2 for r in reports)
    # rank 0 alone wrote the folder: one line per epoch, one row per epoch
    assert double.stderr.count("epoch 1/2") == 1
    assert double.stderr.count("done: 2 epochs") == 1
    rows = list(csv.DictReader(io.StringIO((tmp_path / "two" / "metrics.csv").read_text())))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir()) == ["best", "last"]
    one = load_checkpoint(tmp_path / "one" / "checkpoints" / "last")
    two = load_checkpoint(tmp_path / "two" / "checkpoints" / "last")
    assert one.model is not None
    assert two.model is not None
    weights_one, weights_two = one.model.state_dict(), two.model.state_dict()
    for name, value in weights_one.items():
        if value.is_floating_point():
            difference = float((value - weights_two[name]).abs().max())
            assert difference < TOLERANCE, (name, difference)
        else:
            assert torch.equal(value, weights_two[name]), name
    single_rows = list(csv.DictReader(io.StringIO((tmp_path / "one" / "metrics.csv").read_text())))
    for a, b in zip(single_rows, rows, strict=True):
        assert float(a["train/loss"]) == pytest.approx(float(b["train/loss"]), abs=1e-4)
