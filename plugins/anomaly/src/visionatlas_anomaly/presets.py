"""Settings presets of the synthetic benchmark (imports no torch)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from visionatlas_anomaly.synthetic import SplitSizes

__all__ = ["PRESETS", "Preset"]


@dataclass(frozen=True)
class Preset:
    """Settings of one benchmark run: detector options, image size and split sizes."""

    description: str
    config: Mapping[str, Any]
    image_size: int = 128
    sizes: SplitSizes = field(default_factory=SplitSizes)
    categories: tuple[str, ...] = ("stripes", "weave", "grid", "disc", "nut")


PRESETS: dict[str, Preset] = {
    "default": Preset(
        description="the detector's default settings on 128x128 images, every synthetic category",
        config={},
    ),
    "quick": Preset(
        description="a smoke run: narrow networks, few steps, small splits, two categories",
        config={"width": 0.25, "teacher_steps": 20, "student_steps": 30, "num_students": 2},
        image_size=64,
        sizes=SplitSizes(train=12, validation=4, test_good=4, test_per_defect=2),
        categories=("stripes", "disc"),
    ),
}
