"""The oriented detectors' losses: focal classification, rotated-box regression, angle.

The regression loss compares decoded boxes with their ground truth through the Gaussian
distances of :mod:`visionatlas_oriented.gaussian` (ProbIoU by default); the optional angle
loss is a smooth L1 on the angle difference wrapped to ``[-pi/2, pi/2)``, so a box and the
same box turned by half a turn cost nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor
from torch.nn import functional as F
from torchvision.ops import sigmoid_focal_loss

from visionatlas_oriented.config import AngleLoss, RegressionLoss
from visionatlas_oriented.gaussian import gwd_loss, kld_loss, probiou_loss

__all__ = ["LossSettings", "angle_difference", "classification_loss", "regression_loss"]

_REGRESSION: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "probiou": probiou_loss,
    "kld": kld_loss,
    "gwd": gwd_loss,
}


@dataclass(frozen=True)
class LossSettings:
    """The loss options of a detector (resolved from :class:`~.config.OrientedConfig`)."""

    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    regression: RegressionLoss = "probiou"
    regression_weight: float = 1.0
    angle: AngleLoss = "none"
    angle_weight: float = 1.0


def angle_difference(pred: Tensor, target: Tensor) -> Tensor:
    """``pred - target`` wrapped to ``[-pi/2, pi/2)`` (box angles repeat every half turn)."""
    return (pred - target + math.pi / 2) % math.pi - math.pi / 2


def classification_loss(
    logits: Tensor, targets: Tensor, settings: LossSettings, num_positive: float
) -> Tensor:
    """Sigmoid focal loss summed over locations and classes, per positive location."""
    loss = sigmoid_focal_loss(
        logits, targets, alpha=settings.focal_alpha, gamma=settings.focal_gamma, reduction="sum"
    )
    return loss / max(num_positive, 1.0)


def regression_loss(
    pred: Tensor, target: Tensor, weights: Tensor, settings: LossSettings
) -> dict[str, Tensor]:
    """``{"bbox_regression"}`` (and ``"angle"``): weighted means over positive locations.

    ``pred`` and ``target`` are ``(P, 5)`` boxes ``(cx, cy, w, h, angle)`` (any angle: the
    Gaussian losses are half-turn periodic), ``weights`` ``(P,)``.
    """
    total = weights.sum().clamp(min=1e-6)
    if pred.shape[0] == 0:
        zero = pred.sum() * 0.0
        losses = {"bbox_regression": zero}
        if settings.angle != "none":
            losses["angle"] = zero
        return losses
    per_box = _REGRESSION[settings.regression](pred.float(), target.float())
    losses = {"bbox_regression": settings.regression_weight * (per_box * weights).sum() / total}
    if settings.angle == "smooth_l1":
        difference = angle_difference(pred[:, 4].float(), target[:, 4].float())
        per_angle = F.smooth_l1_loss(difference, difference.new_zeros(()).expand_as(difference),
                                     reduction="none", beta=1.0 / 9)  # fmt: skip
        losses["angle"] = settings.angle_weight * (per_angle * weights).sum() / total
    return losses
