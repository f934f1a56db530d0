"""FCOS and RetinaNet heads whose classification loss honours the focal-loss settings.

torchvision calls ``sigmoid_focal_loss`` with its defaults (alpha 0.25, gamma 2) inside the
heads' ``compute_loss``. These subclasses keep torchvision's computation untouched for those
values and compute the classification term with the configured ones otherwise; the layers,
their initialisation and their state-dict keys are torchvision's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops import sigmoid_focal_loss

__all__ = ["TORCHVISION_FOCAL", "FocalFCOSHead", "FocalRetinaNetHead"]

TORCHVISION_FOCAL = (0.25, 2.0)
"""``(alpha, gamma)`` hard-coded in torchvision's FCOS and RetinaNet losses."""

_IGNORED = -2  # torchvision's Matcher.BETWEEN_THRESHOLDS: anchors left out of the loss


def _one_hot_targets(
    cls_logits: Tensor, targets: Sequence[dict[str, Tensor]], matched_idxs: Sequence[Tensor]
) -> tuple[Tensor, list[Tensor]]:
    """Per-anchor one-hot class targets ``(N, A, C)`` and each image's foreground mask."""
    onehot = torch.zeros_like(cls_logits)
    foregrounds = []
    for image, (target, matched) in enumerate(zip(targets, matched_idxs, strict=True)):
        foreground = matched >= 0
        onehot[image, foreground, target["labels"][matched[foreground]]] = 1.0
        foregrounds.append(foreground)
    return onehot, foregrounds


class FocalFCOSHead(FCOSHead):  # type: ignore[misc]
    """torchvision's ``FCOSHead`` with configurable focal-loss ``alpha`` and ``gamma``."""

    def __init__(
        self,
        in_channels: int,
        num_anchors: int,
        num_classes: int,
        num_convs: int = 4,
        *,
        focal_alpha: float = TORCHVISION_FOCAL[0],
        focal_gamma: float = TORCHVISION_FOCAL[1],
    ) -> None:
        super().__init__(in_channels, num_anchors, num_classes, num_convs)
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma

    def compute_loss(
        self,
        targets: list[dict[str, Tensor]],
        head_outputs: dict[str, Tensor],
        anchors: list[Tensor],
        matched_idxs: list[Tensor],
    ) -> dict[str, Tensor]:
        losses: dict[str, Tensor] = super().compute_loss(
            targets, head_outputs, anchors, matched_idxs
        )
        if (self.focal_alpha, self.focal_gamma) != TORCHVISION_FOCAL:
            losses["classification"] = self.classification_loss(
                targets, head_outputs["cls_logits"], matched_idxs
            )
        return losses

    def classification_loss(
        self, targets: list[dict[str, Tensor]], cls_logits: Tensor, matched_idxs: list[Tensor]
    ) -> Tensor:
        """Focal loss over every location, summed and divided by the foreground count."""
        onehot, foregrounds = _one_hot_targets(cls_logits, targets, matched_idxs)
        total = sigmoid_focal_loss(
            cls_logits, onehot, alpha=self.focal_alpha, gamma=self.focal_gamma, reduction="sum"
        )
        num_foreground = sum(int(f.sum()) for f in foregrounds)
        return total / max(1, num_foreground)


class FocalRetinaNetHead(RetinaNetHead):  # type: ignore[misc]
    """torchvision's ``RetinaNetHead`` with configurable focal-loss ``alpha`` and ``gamma``."""

    def __init__(
        self,
        in_channels: int,
        num_anchors: int,
        num_classes: int,
        norm_layer: Callable[..., nn.Module] | None = None,
        *,
        focal_alpha: float = TORCHVISION_FOCAL[0],
        focal_gamma: float = TORCHVISION_FOCAL[1],
    ) -> None:
        super().__init__(in_channels, num_anchors, num_classes, norm_layer=norm_layer)
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma

    def compute_loss(
        self,
        targets: list[dict[str, Tensor]],
        head_outputs: dict[str, Tensor],
        anchors: list[Tensor],
        matched_idxs: list[Tensor],
    ) -> dict[str, Tensor]:
        if (self.focal_alpha, self.focal_gamma) == TORCHVISION_FOCAL:
            return super().compute_loss(targets, head_outputs, anchors, matched_idxs)
        return {
            "classification": self.classification_loss(
                targets, head_outputs["cls_logits"], matched_idxs
            ),
            "bbox_regression": self.regression_head.compute_loss(
                targets, head_outputs, anchors, matched_idxs
            ),
        }

    def classification_loss(
        self, targets: list[dict[str, Tensor]], cls_logits: Tensor, matched_idxs: list[Tensor]
    ) -> Tensor:
        """Per image: focal loss over anchors not left out by the matcher, divided by the
        foreground count; then the mean over images."""
        onehot, foregrounds = _one_hot_targets(cls_logits, targets, matched_idxs)
        per_image = []
        for image, (matched, foreground) in enumerate(zip(matched_idxs, foregrounds, strict=True)):
            used = matched != _IGNORED
            loss = sigmoid_focal_loss(
                cls_logits[image, used],
                onehot[image, used],
                alpha=self.focal_alpha,
                gamma=self.focal_gamma,
                reduction="sum",
            )
            per_image.append(loss / max(1, int(foreground.sum())))
        return torch.stack(per_image).sum() / len(per_image)
