"""Alternating timing helpers: each benchmark times ours and a reference in turns."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


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
