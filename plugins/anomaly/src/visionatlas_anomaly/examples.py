"""Example inputs of the anomaly-detection task (for the demo and contract checks)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["EXAMPLE_MAX_SIZE", "example_images"]

EXAMPLE_MAX_SIZE = 64
"""Example images are capped at 64x64: dense evaluation of every pixel by eight patch
networks is costly on CPU, and the demo only needs to show the shapes."""


def example_images(*, batch_size: int, input_size: tuple[int, int]) -> Tensor:
    """``(batch_size, 3, h, w)`` images in [0, 1], ``h, w`` capped at 64."""
    height, width = (min(side, EXAMPLE_MAX_SIZE) for side in input_size)
    return torch.rand(batch_size, 3, height, width)
