"""Box-regression losses between rotated boxes seen as 2-D Gaussians.

A box ``(cx, cy, w, h, angle)`` (see :mod:`visionatlas_oriented.boxes`) becomes the normal
distribution with mean ``(cx, cy)`` and covariance ``R diag(w^2/12, h^2/12) R^T`` (the
covariance of the uniform distribution over the rectangle). The Gaussian is the same for
every way of writing the box: ``w``, ``h`` swapped with ``angle + pi/2``, the angle plus
pi; a square's angle does not matter at all. So these losses have no angle discontinuity
at the ends of the le90 range, which is what makes them train well.

Losses take aligned pairs, ``pred`` and ``target`` ``(N, 5)``, and return one value per pair
``(N,)``; all are differentiable and 0 for identical boxes:

* :func:`probiou_loss` (Llerena et al. 2021): the Hellinger distance ``1 - probiou``,
  from the Bhattacharyya distance. **The default for the detectors**: bounded in
  ``[0, 1]``, symmetric, invariant to the image scale like IoU, and free of
  hyperparameters.
* :func:`kld_loss` (Yang et al. 2021): ``1 - 1 / (tau + log1p(KL(pred || target)))``;
  scale-invariant but asymmetric and unbounded inside the log.
* :func:`gwd_loss` (Yang et al. 2021): ``1 - 1 / (tau + log1p(d^2))`` with the squared
  2-Wasserstein distance ``d^2`` in px^2; not scale-invariant (big boxes dominate).

The formulas are rearranged so that every term is a sum of non-negative parts (no
cancellation for thin, tiny or huge boxes, or for identical boxes), lengths are divided by
the pair's mean side before squaring (no overflow or underflow in float32), and sides are
clamped to at least 1e-6 of that mean.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["box_to_gaussian", "gwd_loss", "kld_loss", "probiou", "probiou_loss"]

_MIN_SIDE = 1e-6
"""Sides below this fraction of a pair's mean side are raised to it."""
_MAX_DISTANCE = 100.0
"""Bhattacharyya distances are clamped to this (``exp(-100)`` is 0 in float32 anyway)."""


def box_to_gaussian(boxes: Tensor) -> tuple[Tensor, Tensor]:
    """Mean ``(..., 2)`` and covariance ``(..., 2, 2)`` ``R diag(w^2/12, h^2/12) R^T`` of
    ``(..., 5)`` boxes ``(cx, cy, w, h, angle)`` (le90 or not)."""
    w, h, angle = boxes[..., 2], boxes[..., 3], boxes[..., 4]
    cos, sin = torch.cos(angle), torch.sin(angle)
    a, b = w.square() / 12, h.square() / 12
    xx = a * cos.square() + b * sin.square()
    yy = a * sin.square() + b * cos.square()
    xy = (a - b) * cos * sin
    covariance = torch.stack((torch.stack((xx, xy), -1), torch.stack((xy, yy), -1)), -2)
    return boxes[..., :2], covariance


class _Pair:
    """A pair's quantities in units of its mean side: both boxes long side first, the
    centre offset, the relative angle."""

    def __init__(self, pred: Tensor, target: Tensor) -> None:
        if pred.shape != target.shape or pred.shape[-1:] != (5,):
            raise ValueError(
                "pred and target must both have shape (N, 5) as (cx, cy, w, h, angle), "
                f"got {tuple(pred.shape)} and {tuple(target.shape)}"
            )
        w1, h1, angle1 = _long_side_first(pred)
        w2, h2, angle2 = _long_side_first(target)
        tiny = torch.finfo(pred.dtype).tiny
        self.scale = ((w1 + h1 + w2 + h2) / 4).detach().clamp_min(tiny)
        low = self.scale * _MIN_SIDE
        self.w1, self.h1 = w1.clamp_min(low) / self.scale, h1.clamp_min(low) / self.scale
        self.w2, self.h2 = w2.clamp_min(low) / self.scale, h2.clamp_min(low) / self.scale
        self.dx = (pred[..., 0] - target[..., 0]) / self.scale
        self.dy = (pred[..., 1] - target[..., 1]) / self.scale
        self.angle1, self.angle2 = angle1, angle2
        relative = angle2 - angle1
        self.sin2, self.cos2 = torch.sin(relative).square(), torch.cos(relative).square()

    def along(self, angle: Tensor) -> tuple[Tensor, Tensor]:
        """The offset's components along a box's ``u`` and ``v`` directions."""
        cos, sin = torch.cos(angle), torch.sin(angle)
        return self.dx * cos + self.dy * sin, self.dy * cos - self.dx * sin

    def skew(self) -> Tensor:
        """``sin^2(relative angle) (w1^2 - h1^2)(w2^2 - h2^2)``, >= 0 (long sides first)."""
        return (
            self.sin2
            * (self.w1.square() - self.h1.square())
            * (self.w2.square() - self.h2.square())
        )


def _long_side_first(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``w >= h`` (swapped, angle + pi/2, where needed); the Gaussian is unchanged."""
    w, h, angle = boxes[..., 2], boxes[..., 3], boxes[..., 4]
    swap = w < h
    return (
        torch.where(swap, h, w),
        torch.where(swap, w, h),
        torch.where(swap, angle + math.pi / 2, angle),
    )


def _bhattacharyya(pair: _Pair) -> Tensor:
    w1, h1, w2, h2 = pair.w1, pair.h1, pair.w2, pair.h2
    u1, v1 = pair.along(pair.angle1)
    u2, v2 = pair.along(pair.angle2)
    skew = pair.skew()
    # (1/8) mu^T ((S1 + S2) / 2)^-1 mu, with adj(S1 + S2) and det(S1 + S2) as sums
    quadratic = (
        w1.square() * v1.square()
        + h1.square() * u1.square()
        + w2.square() * v2.square()
        + h2.square() * u2.square()
    )
    determinant = (w1.square() + w2.square()) * (h1.square() + h2.square()) + skew
    mean_term = 3 * quadratic / determinant
    # (1/2) ln(det((S1 + S2) / 2) / sqrt(det S1 det S2)) = (1/2) log1p(excess)
    excess = (
        (w1 - w2).square() * (h1.square() + h2.square()) + 2 * w1 * w2 * (h1 - h2).square() + skew
    ) / (4 * w1 * w2 * h1 * h2)
    return (mean_term + 0.5 * torch.log1p(excess)).clamp(max=_MAX_DISTANCE)


def probiou(pred: Tensor, target: Tensor, eps: float = 1e-7) -> Tensor:
    """ProbIoU ``(N,)`` of aligned ``(N, 5)`` boxes ``(cx, cy, w, h, angle)`` (le90 or not):
    ``1 - sqrt(1 - exp(-B))`` for the Bhattacharyya distance ``B`` of their Gaussians, in
    ``[0, 1]`` and exactly 1 for identical boxes. ``eps`` keeps the square root's gradient
    finite there (``sqrt(x + eps) - sqrt(eps)`` in place of ``sqrt(x)``)."""
    distance = _bhattacharyya(_Pair(pred, target))
    root_eps = math.sqrt(eps)
    hellinger = (torch.sqrt(-torch.expm1(-distance) + eps) - root_eps).clamp(min=0)
    return 1 - hellinger


def probiou_loss(pred: Tensor, target: Tensor) -> Tensor:
    """``1 - probiou`` ``(N,)``: the Hellinger distance of the boxes' Gaussians, in
    ``[0, 1]``; the default box-regression loss of the detectors."""
    return 1 - probiou(pred, target)


def kld_loss(pred: Tensor, target: Tensor, tau: float = 1.0) -> Tensor:
    """``1 - 1 / (tau + log1p(KL(pred || target)))`` ``(N,)`` of aligned ``(N, 5)`` boxes
    ``(cx, cy, w, h, angle)`` (le90 or not), the Kullback-Leibler divergence of their
    Gaussians (Yang et al. 2021); 0 for identical boxes with ``tau = 1``."""
    pair = _Pair(pred, target)
    w1, h1, w2, h2 = pair.w1, pair.h1, pair.w2, pair.h2
    u2, v2 = pair.along(pair.angle2)
    # x - 1 - ln x for the variance ratios x, with x - 1 computed directly
    ratio_w = (w1 - w2) * (w1 + w2) / w2.square()
    ratio_h = (h1 - h2) * (h1 + h2) / h2.square()
    shape = ratio_w - torch.log1p(ratio_w) + ratio_h - torch.log1p(ratio_h)
    rotation = pair.skew() / (w2 * h2).square()
    mean_term = 12 * (u2.square() / w2.square() + v2.square() / h2.square())
    divergence = 0.5 * (shape + rotation + mean_term).clamp(min=0)
    return 1 - 1 / (tau + torch.log1p(divergence))


def gwd_loss(pred: Tensor, target: Tensor, tau: float = 1.0) -> Tensor:
    """``1 - 1 / (tau + log1p(d^2))`` ``(N,)`` of aligned ``(N, 5)`` boxes
    ``(cx, cy, w, h, angle)`` (le90 or not), with the squared 2-Wasserstein distance ``d^2``
    (px^2) of their Gaussians (Yang et al. 2021); 0 for identical boxes with ``tau = 1``."""
    pair = _Pair(pred, target)
    w1, h1, w2, h2 = pair.w1, pair.h1, pair.w2, pair.h2
    # tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), with tr(sqrt(M)) = sqrt(tr M + 2 sqrt(det M))
    # for 2x2 M, rearranged into (T^2 - 4X) / (T + 2 sqrt(X)) with T^2 - 4X a sum
    numerator = ((w1 - w2).square() + (h1 - h2).square()) * (
        (w1 + w2).square() + (h1 + h2).square()
    ) + 4 * pair.skew()
    product = (
        pair.cos2 * ((w1 * w2).square() + (h1 * h2).square())
        + pair.sin2 * ((w1 * h2).square() + (h1 * w2).square())
        + 2 * w1 * h1 * w2 * h2
    )
    sides = w1.square() + h1.square() + w2.square() + h2.square()
    covariance_term = numerator / (12 * (sides + 2 * torch.sqrt(product)))
    distance = (pair.dx.square() + pair.dy.square() + covariance_term) * pair.scale.square()
    return 1 - 1 / (tau + torch.log1p(distance))
