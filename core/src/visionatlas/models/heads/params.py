"""Parameter counts of the built-in heads, computed without torch."""

from __future__ import annotations

__all__ = ["linear_head_params"]


def linear_head_params(in_features: int, num_outputs: int) -> int:
    """Parameters of :class:`~visionatlas.models.heads.linear.LinearHead`: weights and biases."""
    return in_features * num_outputs + num_outputs
