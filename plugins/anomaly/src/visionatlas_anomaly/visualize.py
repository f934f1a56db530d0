"""Heatmap overlays of anomaly maps, written as PNG files with Pillow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from torch import Tensor

__all__ = ["heatmap", "overlay", "save_overlay"]

# Anchors of a perceptually ordered colormap (dark blue -> cyan -> yellow -> red).
_ANCHORS = np.array(
    [[0.0, 0.0, 0.3], [0.0, 0.45, 0.9], [0.1, 0.85, 0.85], [1.0, 0.9, 0.1], [0.85, 0.05, 0.0]]
)


def heatmap(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """Colors ``(H, W, 3)`` for ``values`` in [0, 1]."""
    v = np.clip(values, 0.0, 1.0) * (len(_ANCHORS) - 1)
    low = np.floor(v).astype(np.int64).clip(0, len(_ANCHORS) - 2)
    frac = (v - low)[..., None]
    return _ANCHORS[low] * (1 - frac) + _ANCHORS[low + 1] * frac


def overlay(
    image: Tensor, anomaly_map: Tensor, *, low: float, high: float, alpha: float = 0.5
) -> NDArray[np.uint8]:
    """Blend the heatmap of ``anomaly_map`` (scaled from ``low`` to ``high``) over ``image``."""
    rgb = image.detach().cpu().permute(1, 2, 0).double().numpy()
    scores = anomaly_map.detach().cpu().double().numpy()
    span = max(high - low, 1e-12)
    colors = heatmap((scores - low) / span)
    blended = (1 - alpha) * rgb + alpha * colors
    return np.round(np.clip(blended, 0.0, 1.0) * 255).astype(np.uint8)


def save_overlay(
    path: Path, image: Tensor, anomaly_map: Tensor, *, low: float, high: float
) -> Path:
    from PIL import Image

    Image.fromarray(overlay(image, anomaly_map, low=low, high=high)).save(path)
    return path
