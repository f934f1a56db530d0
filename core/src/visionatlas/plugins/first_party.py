"""The tasks of visionatlas's own plugin distributions, to name what to install."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["TASK_DISTRIBUTIONS", "install_hint"]

TASK_DISTRIBUTIONS: Mapping[str, str] = MappingProxyType(
    {
        "anomaly_detection": "visionatlas-anomaly",
        "classification": "visionatlas-classification",
        "instance_segmentation": "visionatlas-segmentation",
        "object_detection": "visionatlas-detection",
        "regression": "visionatlas-regression",
        "segmentation": "visionatlas-segmentation",
    }
)
"""Task name -> the first-party distribution that provides it."""


def install_hint(task: str) -> str | None:
    """``"pip install visionatlas-detection"`` for a first-party task, else ``None``."""
    distribution = TASK_DISTRIBUTIONS.get(task)
    return f"pip install {distribution}" if distribution else None
