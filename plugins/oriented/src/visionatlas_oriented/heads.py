"""Dense heads of the oriented detectors, shared over the pyramid levels.

Two towers of four ``3x3 conv + GroupNorm(32) + ReLU`` blocks (FCOS's head, which the
rotated RetinaNet here uses too), one for classification and one for the box. Per location
and anchor the classification tower gives one logit per object class (the background has
no output: a location is background when every class is off) and the box tower gives
``box_outputs`` numbers, plus one centre-ness logit for FCOS.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["OrientedHead", "Scale"]

PRIOR_PROBABILITY = 0.01


def _tower(channels: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(32, channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class Scale(nn.Module):
    """A learnable scalar multiplier (FCOS's per-level scale of the distances)."""

    def __init__(self, value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(value))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class OrientedHead(nn.Module):
    """``features -> (class logits, box outputs, centre-ness logits or None)`` per level.

    Outputs are flattened per image to ``(N, HWA, C)``, ``(N, HWA, box_outputs)`` and
    ``(N, HWA)``, levels in order, locations row-major, anchors fastest.
    """

    def __init__(
        self,
        channels: int,
        num_classes: int,
        *,
        num_anchors: int = 1,
        box_outputs: int = 5,
        centerness: bool = False,
        depth: int = 4,
    ) -> None:
        super().__init__()
        self.num_classes, self.num_anchors, self.box_outputs = num_classes, num_anchors, box_outputs
        self.cls_tower = _tower(channels, depth)
        self.box_tower = _tower(channels, depth)
        self.cls_logits = nn.Conv2d(channels, num_anchors * num_classes, 3, padding=1)
        self.box_regression = nn.Conv2d(channels, num_anchors * box_outputs, 3, padding=1)
        self.centerness = nn.Conv2d(channels, num_anchors, 3, padding=1) if centerness else None
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.zeros_(module.bias)  # type: ignore[arg-type]  # every conv has one
        prior = -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
        nn.init.constant_(self.cls_logits.bias, prior)  # type: ignore[arg-type]

    def _flat(self, x: Tensor, per_anchor: int) -> Tensor:
        n, _, h, w = x.shape
        return (
            x.view(n, self.num_anchors, per_anchor, h, w)
            .permute(0, 3, 4, 1, 2)
            .reshape(n, h * w * self.num_anchors, per_anchor)
        )

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        logits, boxes, centerness = [], [], []
        for feature in features:
            cls = self.cls_tower(feature)
            box = self.box_tower(feature)
            logits.append(self._flat(self.cls_logits(cls), self.num_classes))
            boxes.append(self._flat(self.box_regression(box), self.box_outputs))
            if self.centerness is not None:
                centerness.append(self._flat(self.centerness(box), 1)[..., 0])
        return logits, boxes, centerness
