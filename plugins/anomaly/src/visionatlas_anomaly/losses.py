"""The training losses of Uninformed Students (teacher: distillation, triplet, compactness;
students: regression of the normalized teacher descriptors)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "compactness_loss",
    "distillation_loss",
    "student_regression_loss",
    "triplet_loss",
]


def distillation_loss(decoded: Tensor, target: Tensor) -> Tensor:
    """Knowledge distillation: mean over the batch of ``||decoded - target||^2``.

    ``decoded`` is the teacher's descriptor mapped by the linear decoder to the width of the
    pretrained network's output ``target`` (both ``(N, 512)`` for ResNet-18).
    """
    _same_shape(decoded, target, "decoded descriptors", "targets")
    return (decoded - target).pow(2).sum(dim=1).mean()


def triplet_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float) -> Tensor:
    """Triplet loss with anchor swap: ``mean(max(0, margin + d(a, p) - min(d(a, n), d(p, n))))``.

    Distances ``d`` are squared Euclidean; the swap uses the harder of the two negatives.
    """
    _same_shape(anchor, positive, "anchor", "positive")
    _same_shape(anchor, negative, "anchor", "negative")
    d_pos = (anchor - positive).pow(2).sum(dim=1)
    d_neg = torch.minimum(
        (anchor - negative).pow(2).sum(dim=1), (positive - negative).pow(2).sum(dim=1)
    )
    return torch.clamp(margin + d_pos - d_neg, min=0.0).mean()


def compactness_loss(descriptors: Tensor, eps: float = 1e-6) -> Tensor:
    """Mean squared off-diagonal correlation between descriptor dimensions over a batch.

    ``descriptors`` is ``(N, D)`` with ``N >= 2``; the loss is 0 for uncorrelated dimensions
    and 1 when all dimensions are perfectly (anti-)correlated.
    """
    if descriptors.dim() != 2 or descriptors.shape[0] < 2 or descriptors.shape[1] < 2:
        raise ValueError(
            f"compactness needs a (N, D) batch with N >= 2 and D >= 2, "
            f"got {tuple(descriptors.shape)}"
        )
    centered = descriptors - descriptors.mean(dim=0, keepdim=True)
    cov = centered.T @ centered
    std = cov.diagonal().clamp_min(eps).sqrt()
    corr = cov / (std[:, None] * std[None, :])
    dim = corr.shape[0]
    off = corr - torch.diag_embed(corr.diagonal())
    return off.pow(2).sum() / (dim * (dim - 1))


def student_regression_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean over positions of ``||prediction - target||^2`` (descriptors along dim 1)."""
    _same_shape(prediction, target, "student descriptors", "teacher descriptors")
    return (prediction - target).pow(2).sum(dim=1).mean()


def _same_shape(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )
