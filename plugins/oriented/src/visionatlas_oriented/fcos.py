"""Rotated FCOS: per location a class score, a centre-ness, four distances and an angle.

A location inside a ground-truth box (in the box's own rotated frame), within
``center_sampling_radius`` strides of its centre and on the pyramid level whose range holds
its largest distance (FCOS's ranges: up to 64 px on P3, 64-128 on P4, ...) is a positive of
that box (of the smallest one when several qualify). A box that gets no location this way
(a thin or tiny one between the grid points) takes the location nearest its centre on the
level its size picks, so every object is learnt.

The distances ``(l, t, r, b)`` run from the location to the four sides of the box along the
predicted angle; decoded, they give ``(cx, cy, w, h, angle)``, which the regression loss
compares with the ground truth as Gaussians (ProbIoU by default), weighted by the
centre-ness targets as FCOS weighs its IoU loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from visionatlas_oriented.detector import OrientedDetector
from visionatlas_oriented.heads import OrientedHead, Scale
from visionatlas_oriented.losses import classification_loss, regression_loss
from visionatlas_oriented.transform import Batch

__all__ = ["RotatedFCOS", "decode_distances", "level_ranges"]

CENTER_SAMPLING_RADIUS = 1.5
MIN_REGRESSION_WEIGHT = 0.1
"""Floor of a positive's regression weight (its centre-ness target, which is 0 for a
location outside its thin box)."""
_MAX_LOG_DISTANCE = math.log(4096.0)


def level_ranges(strides: Sequence[int]) -> list[tuple[float, float]]:
    """FCOS's regression ranges: ``(8 s_{i-1}, 8 s_i]``, the first from 0, the last open."""
    uppers = [8.0 * s for s in strides[:-1]] + [math.inf]
    lowers = [-1.0, *uppers[:-1]]
    return list(zip(lowers, uppers, strict=True))


def decode_distances(points: Tensor, distances: Tensor, angles: Tensor) -> Tensor:
    """Boxes ``(P, 5)`` from locations ``(P, 2)``, distances ``(P, 4)`` ``(l, t, r, b)``
    along the angle's axes, and angles ``(P,)``; the angle is not wrapped."""
    left, top, right, bottom = distances.unbind(-1)
    cos, sin = torch.cos(angles), torch.sin(angles)
    along, across = (left - right) / 2, (top - bottom) / 2  # the location, in the box frame
    cx = points[:, 0] - along * cos + across * sin
    cy = points[:, 1] - along * sin - across * cos
    return torch.stack([cx, cy, left + right, top + bottom, angles], dim=-1)


class RotatedFCOS(OrientedDetector):
    """FCOS with rotated boxes on a feature pyramid (P3-P7)."""

    def __init__(self, backbone: nn.Module, channels: int, **kwargs: Any) -> None:
        num_classes = kwargs["num_classes"]
        head = OrientedHead(channels, num_classes - 1, box_outputs=5, centerness=True)
        super().__init__(backbone, head, **kwargs)
        self.scales = nn.ModuleList(Scale() for _ in self.strides)

    # -- decoding ----------------------------------------------------------------------------
    def _boxes(self, levels: Tensor, points: Tensor, raw: Tensor) -> Tensor:
        """Decode ``raw`` ``(P, 5)`` head outputs at ``points`` of pyramid ``levels``."""
        scales = torch.stack([module.scale for module in self.scales if isinstance(module, Scale)])
        scales = scales[levels]
        strides = points.new_tensor(self.strides)[levels]
        log_distances = (raw[:, :4].float() * scales[:, None]).clamp(max=_MAX_LOG_DISTANCE)
        distances = torch.exp(log_distances) * strides[:, None]
        return decode_distances(points, distances, raw[:, 4].float())

    def candidates(
        self, outputs: Any, shapes: list[tuple[int, int]]
    ) -> tuple[Tensor, Tensor, Tensor]:
        logits, raw, centerness = outputs
        boxes, scores, labels = [], [], []
        for level, points in enumerate(self.points(shapes, logits[0].device)):
            quality = torch.sigmoid(logits[level].float()) * torch.sigmoid(
                centerness[level].float()
            ).unsqueeze(2)
            top, location, label = self.top_per_level(quality.sqrt())
            count, k = location.shape
            chosen = torch.gather(raw[level], 1, location[..., None].expand(-1, -1, 5))
            flat = self._boxes(
                torch.full_like(location, level).flatten(), points[location.flatten()],
                chosen.reshape(-1, 5),
            )  # fmt: skip
            boxes.append(flat.view(count, k, 5))
            scores.append(top)
            labels.append(label)
        return torch.cat(boxes, dim=1), torch.cat(scores, dim=1), torch.cat(labels, dim=1)

    # -- training ----------------------------------------------------------------------------
    def _assign(self, points: Tensor, levels: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
        """``(matched box per location or -1, centre-ness target per location)``."""
        count = points.shape[0]
        if boxes.shape[0] == 0:
            return points.new_full((count,), -1, dtype=torch.long), points.new_zeros(count)
        strides = points.new_tensor(self.strides)[levels]
        ranges = points.new_tensor(level_ranges(self.strides))[levels]
        offset = points[:, None, :] - boxes[None, :, :2]
        cos, sin = torch.cos(boxes[:, 4]), torch.sin(boxes[:, 4])
        along = offset[..., 0] * cos + offset[..., 1] * sin
        across = -offset[..., 0] * sin + offset[..., 1] * cos
        half_w, half_h = boxes[:, 2] / 2, boxes[:, 3] / 2
        sides = torch.stack(
            [half_w + along, half_h + across, half_w - along, half_h - across], dim=-1
        )  # (P, K, 4): l, t, r, b
        inside = sides.min(dim=-1).values > 0
        radius = CENTER_SAMPLING_RADIUS * strides[:, None]
        near = (along.abs() < radius) & (across.abs() < radius)
        reach = sides.max(dim=-1).values
        fits = (reach > ranges[:, :1]) & (reach <= ranges[:, 1:])
        area = (boxes[:, 2] * boxes[:, 3])[None].expand(count, -1)
        area = torch.where(inside & near & fits, area, torch.full_like(area, math.inf))
        smallest, matched = area.min(dim=1)
        matched = torch.where(torch.isfinite(smallest), matched, torch.full_like(matched, -1))
        # boxes left without a location take the one nearest their centre on their level
        size_level = torch.searchsorted(
            points.new_tensor([hi for _, hi in level_ranges(self.strides)]).contiguous(),
            torch.maximum(half_w, half_h).contiguous(),
        ).clamp(max=len(self.strides) - 1)
        has = torch.zeros(boxes.shape[0], dtype=torch.bool, device=points.device)
        has[matched[matched >= 0]] = True
        for k in torch.nonzero(~has).flatten().tolist():
            distance = (offset[:, k] ** 2).sum(-1).masked_fill(levels != size_level[k], math.inf)
            nearest = int(distance.argmin())
            if matched[nearest] < 0:
                matched[nearest] = k
        positive = matched >= 0
        chosen = sides[torch.arange(count, device=points.device), matched.clamp(min=0)].clamp(min=0)
        lr, tb = chosen[:, [0, 2]], chosen[:, [1, 3]]
        ratio = (lr.min(-1).values / lr.max(-1).values.clamp(min=1e-6)) * (
            tb.min(-1).values / tb.max(-1).values.clamp(min=1e-6)
        )
        return matched, torch.where(positive, ratio.sqrt(), torch.zeros_like(ratio))

    def losses(
        self, outputs: Any, shapes: list[tuple[int, int]], targets: list[dict[str, Any]],
        batch: Batch,
    ) -> dict[str, Tensor]:  # fmt: skip
        logits, raw, centerness = outputs
        points_per_level = self.points(shapes, logits[0].device)
        points = torch.cat(points_per_level)
        levels = torch.cat([
            torch.full((p.shape[0],), i, device=points.device, dtype=torch.long)
            for i, p in enumerate(points_per_level)
        ])  # fmt: skip
        all_logits = torch.cat(logits, dim=1)
        all_raw = torch.cat(raw, dim=1)
        all_centerness = torch.cat(centerness, dim=1)
        class_targets = torch.zeros_like(all_logits, dtype=torch.float32)
        preds, gts, weights, ctr_logits, ctr_targets = [], [], [], [], []
        for image, target in enumerate(targets):
            boxes = target["boxes"].float()
            matched, ctr = self._assign(points, levels, boxes)
            positive = torch.nonzero(matched >= 0).flatten()
            if positive.numel() == 0:
                continue
            class_targets[image, positive, target["labels"][matched[positive]] - 1] = 1.0
            preds.append(self._boxes(levels[positive], points[positive], all_raw[image, positive]))
            gts.append(boxes[matched[positive]])
            weights.append(ctr[positive].clamp(min=MIN_REGRESSION_WEIGHT))
            ctr_logits.append(all_centerness[image, positive])
            ctr_targets.append(ctr[positive])
        num_positive = float(sum(p.shape[0] for p in preds))
        losses = {
            "classification": classification_loss(
                all_logits.float(), class_targets, self.loss_settings, num_positive
            )
        }
        empty = all_logits.new_zeros((0, 5))
        losses.update(
            regression_loss(
                torch.cat(preds) if preds else empty,
                torch.cat(gts) if gts else empty,
                torch.cat(weights) if weights else empty[:, 0],
                self.loss_settings,
            )
        )
        if ctr_logits:
            losses["bbox_ctrness"] = F.binary_cross_entropy_with_logits(
                torch.cat(ctr_logits).float(), torch.cat(ctr_targets), reduction="sum"
            ) / max(num_positive, 1.0)
        else:
            losses["bbox_ctrness"] = all_centerness.sum() * 0.0
        return losses
