"""The synthetic benchmark: generate the data set, fit one detector per category, score it."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visionatlas_anomaly.config import UninformedStudentsConfig
from visionatlas_anomaly.data import read_category
from visionatlas_anomaly.metrics import DetectionMetrics, evaluate
from visionatlas_anomaly.model import UninformedStudents
from visionatlas_anomaly.presets import PRESETS, Preset
from visionatlas_anomaly.synthetic import CATEGORIES, generate_dataset

__all__ = ["PRESETS", "BenchmarkResult", "CategoryResult", "Preset", "run_benchmark"]


@dataclass(frozen=True)
class CategoryResult:
    category: str
    metrics: DetectionMetrics
    fit_s: float
    predict_s: float
    teacher_source: str


@dataclass(frozen=True)
class BenchmarkResult:
    preset: str
    rows: list[CategoryResult]

    @property
    def mean(self) -> DetectionMetrics:
        n = len(self.rows)
        return DetectionMetrics(
            image_auroc=sum(r.metrics.image_auroc for r in self.rows) / n,
            pixel_auroc=sum(r.metrics.pixel_auroc for r in self.rows) / n,
            pro=sum(r.metrics.pro for r in self.rows) / n,
        )

    def table(self) -> str:
        header = (
            f"{'category':<10} {'image AUROC':>11} {'pixel AUROC':>11} {'PRO@0.3':>8} "
            f"{'fit s':>7} {'predict s':>9}"
        )
        lines = [header, "-" * len(header)]
        for r in self.rows:
            m = r.metrics
            lines.append(
                f"{r.category:<10} {m.image_auroc:>11.4f} {m.pixel_auroc:>11.4f} {m.pro:>8.4f} "
                f"{r.fit_s:>7.1f} {r.predict_s:>9.1f}"
            )
        mean = self.mean
        lines.append("-" * len(header))
        lines.append(
            f"{'mean':<10} {mean.image_auroc:>11.4f} {mean.pixel_auroc:>11.4f} {mean.pro:>8.4f}"
        )
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "categories": [
                {
                    "category": r.category,
                    **r.metrics.as_dict(),
                    "fit_s": round(r.fit_s, 2),
                    "predict_s": round(r.predict_s, 2),
                    "teacher_source": r.teacher_source,
                }
                for r in self.rows
            ],
            "mean": self.mean.as_dict(),
        }


def run_benchmark(
    out_dir: str | Path,
    *,
    preset: str = "default",
    categories: Sequence[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    seed: int = 0,
    save_models: bool = False,
    log: Callable[[str], None] | None = None,
) -> BenchmarkResult:
    """Generate (if missing) the data under ``out_dir/data``, fit and evaluate each category."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    chosen = PRESETS[preset]
    names = list(categories or chosen.categories)
    unknown = [c for c in names if c not in CATEGORIES]
    if unknown:
        raise ValueError(f"unknown categories {unknown}; known: {', '.join(CATEGORIES)}")
    root = Path(out_dir)
    data_root = root / "data"
    generate_dataset(data_root, names, sizes=chosen.sizes, image_size=chosen.image_size, seed=seed)
    settings = {"seed": seed, **chosen.config, **(overrides or {})}
    rows = []
    for name in names:
        data = read_category(data_root / name)
        detector = UninformedStudents(UninformedStudentsConfig.model_validate(settings))
        start = time.perf_counter()
        detector.fit(data.train, data.validation)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        prediction = detector.predict(data.test)
        predict_s = time.perf_counter() - start
        metrics = evaluate(
            prediction.anomaly_maps.numpy(),
            prediction.scores.numpy(),
            data.masks.numpy(),
            data.labels.numpy(),
        )
        if save_models:
            detector.save(root / "models" / name)
        row = CategoryResult(name, metrics, fit_s, predict_s, detector.teacher_source or "")
        rows.append(row)
        if log is not None:
            m = metrics
            log(
                f"{name}: image AUROC {m.image_auroc:.4f}, pixel AUROC {m.pixel_auroc:.4f}, "
                f"PRO {m.pro:.4f} (fit {fit_s:.0f} s, predict {predict_s:.0f} s)"
            )
    return BenchmarkResult(preset, rows)
