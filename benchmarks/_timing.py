"""Alternating timing helpers: each benchmark times ours and a reference in turns."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Comparison:
    name: str
    ours_s: float
    reference_s: float
    target: str
    ratio: float
    passed: bool

    def row(self) -> str:
        verdict = "ok" if self.passed else "MISSED"
        return (
            f"{self.name:<44} ours {self.ours_s * 1e3:9.1f} ms  reference "
            f"{self.reference_s * 1e3:9.1f} ms  ratio {self.ratio:6.3f}  target {self.target:<8}"
            f" {verdict}"
        )


def alternate(
    ours: Callable[[], object], reference: Callable[[], object], repeats: int
) -> tuple[float, float, float]:
    """Median seconds of ``ours`` and ``reference`` run in turns, and the median of the
    per-pair ratios ours/reference (robust to drift in machine load)."""
    ours_t, ref_t, ratios = [], [], []
    for i in range(repeats):
        pair = []
        for fn in (ours, reference) if i % 2 == 0 else (reference, ours):
            start = time.perf_counter()
            fn()
            pair.append((fn is ours, time.perf_counter() - start))
        o = next(t for is_ours, t in pair if is_ours)
        r = next(t for is_ours, t in pair if not is_ours)
        ours_t.append(o)
        ref_t.append(r)
        ratios.append(o / r)
    return statistics.median(ours_t), statistics.median(ref_t), statistics.median(ratios)


def run_comparisons(
    benchmarks: Mapping[str, Callable[[int], Comparison]],
    description: str,
    commands: Mapping[str, Callable[[], int]] | None = None,
) -> int:
    """The command line of a ratio-benchmark script: run all or some, print, ``--check``.

    ``commands`` are other modes, run alone by name (``timm_bridge.py params``).
    """
    commands = dict(commands or {})
    parser = argparse.ArgumentParser(description=description)
    choices = ", ".join([*benchmarks, *commands])
    parser.add_argument("only", nargs="*", help=f"subset to run: {choices}")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    if len(args.only) == 1 and args.only[0] in commands:
        return commands[args.only[0]]()
    unknown = [name for name in args.only if name not in benchmarks]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {choices}")
    results = [benchmarks[name](args.repeats) for name in (args.only or benchmarks)]
    for result in results:
        print(result.row(), flush=True)
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=2))
    return 0 if all(r.passed for r in results) or not args.check else 1
