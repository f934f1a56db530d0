"""Rotated RetinaNet: nine horizontal anchors per location, rotated boxes regressed from them.

Anchors are RetinaNet's (sizes ``4 x stride`` times ``2^0, 2^(1/3), 2^(2/3)``, aspect
ratios 0.5, 1 and 2, angle 0). An anchor whose rotated IoU with a ground-truth box is at
least 0.5 is a positive of it, below 0.4 a negative, in between ignored; each box also
claims the anchors it overlaps best (torchvision's low-quality matches), so thin boxes at
45 degrees, which no horizontal anchor covers well, are learnt too. The head regresses
``(dx, dy, dw, dh, angle)`` against the anchor; the decoded box is compared with the ground
truth as a Gaussian (ProbIoU by default).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from visionatlas_oriented.detector import OrientedDetector
from visionatlas_oriented.heads import OrientedHead
from visionatlas_oriented.iou import rotated_box_iou
from visionatlas_oriented.losses import classification_loss, regression_loss
from visionatlas_oriented.transform import Batch

__all__ = ["RotatedRetinaNet", "anchor_shapes", "decode_deltas"]

POSITIVE_IOU, NEGATIVE_IOU = 0.5, 0.4
_MAX_LOG_SCALE = math.log(1000.0 / 16)


def anchor_shapes(stride: int) -> Tensor:
    """``(9, 2)`` anchor widths and heights of a level: 3 scales x 3 aspect ratios."""
    shapes = []
    for ratio in (0.5, 1.0, 2.0):
        for octave in (0.0, 1 / 3, 2 / 3):
            size = 4 * stride * 2**octave
            shapes.append((size / math.sqrt(ratio), size * math.sqrt(ratio)))
    return torch.tensor(shapes)


def decode_deltas(anchors: Tensor, deltas: Tensor) -> Tensor:
    """Boxes ``(P, 5)`` from horizontal ``anchors`` ``(P, 5)`` and ``deltas`` ``(P, 5)``."""
    dw = deltas[:, 2].clamp(max=_MAX_LOG_SCALE)
    dh = deltas[:, 3].clamp(max=_MAX_LOG_SCALE)
    return torch.stack([
        anchors[:, 0] + deltas[:, 0] * anchors[:, 2],
        anchors[:, 1] + deltas[:, 1] * anchors[:, 3],
        anchors[:, 2] * torch.exp(dw),
        anchors[:, 3] * torch.exp(dh),
        anchors[:, 4] + deltas[:, 4],
    ], dim=-1)  # fmt: skip


class RotatedRetinaNet(OrientedDetector):
    """RetinaNet with rotated boxes on a feature pyramid (P3-P7)."""

    anchor_sizes: Tensor

    def __init__(self, backbone: nn.Module, channels: int, **kwargs: Any) -> None:
        num_classes = kwargs["num_classes"]
        head = OrientedHead(channels, num_classes - 1, num_anchors=9, box_outputs=5)
        super().__init__(backbone, head, **kwargs)
        self.register_buffer(
            "anchor_sizes", torch.stack([anchor_shapes(s) for s in self.strides]), persistent=False
        )

    def anchors(self, shapes: list[tuple[int, int]], device: torch.device) -> list[Tensor]:
        """Every level's ``(HW * 9, 5)`` anchors, locations row-major, anchors fastest."""
        levels = []
        for level, points in enumerate(self.points(shapes, device)):
            sizes = self.anchor_sizes[level].to(device)
            centres = points[:, None, :].expand(-1, sizes.shape[0], -1)
            whs = sizes[None].expand(points.shape[0], -1, -1)
            zeros = centres.new_zeros((*centres.shape[:2], 1))
            levels.append(torch.cat([centres, whs, zeros], dim=-1).reshape(-1, 5))
        return levels

    def candidates(
        self, outputs: Any, shapes: list[tuple[int, int]]
    ) -> tuple[Tensor, Tensor, Tensor]:
        logits, raw, _ = outputs
        boxes, scores, labels = [], [], []
        for level, anchors in enumerate(self.anchors(shapes, logits[0].device)):
            top, index, label = self.top_per_level(torch.sigmoid(logits[level].float()))
            count, k = index.shape
            chosen = torch.gather(raw[level], 1, index[..., None].expand(-1, -1, 5))
            flat = decode_deltas(anchors[index.flatten()], chosen.reshape(-1, 5).float())
            boxes.append(flat.view(count, k, 5))
            scores.append(top)
            labels.append(label)
        return torch.cat(boxes, dim=1), torch.cat(scores, dim=1), torch.cat(labels, dim=1)

    def _match(self, anchors: Tensor, boxes: Tensor) -> Tensor:
        """Per anchor: the matched box, ``-1`` (negative) or ``-2`` (ignored)."""
        if boxes.shape[0] == 0:
            return torch.full((anchors.shape[0],), -1, dtype=torch.long, device=anchors.device)
        iou = rotated_box_iou(boxes, anchors)  # (K, P)
        best, matched = iou.max(dim=0)
        matched = torch.where(best >= POSITIVE_IOU, matched, torch.full_like(matched, -2))
        matched = torch.where(best < NEGATIVE_IOU, torch.full_like(matched, -1), matched)
        top = iou.max(dim=1, keepdim=True).values
        gt, anchor = torch.nonzero((iou == top) & (top > 0), as_tuple=True)
        matched[anchor] = gt
        return matched

    def losses(
        self, outputs: Any, shapes: list[tuple[int, int]], targets: list[dict[str, Any]],
        batch: Batch,
    ) -> dict[str, Tensor]:  # fmt: skip
        logits, raw, _ = outputs
        anchors = torch.cat(self.anchors(shapes, logits[0].device))
        all_logits, all_raw = torch.cat(logits, dim=1), torch.cat(raw, dim=1)
        cls_losses, preds, gts = [], [], []
        num_positive = 0
        for image, target in enumerate(targets):
            boxes = target["boxes"].float()
            with torch.no_grad():
                matched = self._match(anchors, boxes)
            positive = torch.nonzero(matched >= 0).flatten()
            valid = matched != -2
            class_targets = torch.zeros_like(all_logits[image], dtype=torch.float32)
            class_targets[positive, target["labels"][matched[positive]] - 1] = 1.0
            cls_losses.append((all_logits[image][valid].float(), class_targets[valid]))
            preds.append(decode_deltas(anchors[positive], all_raw[image, positive].float()))
            gts.append(boxes[matched[positive]])
            num_positive += int(positive.numel())
        classification = sum(
            (classification_loss(lg, tg, self.loss_settings, 1.0) for lg, tg in cls_losses),
            all_logits.new_zeros(()),
        ) / max(num_positive, 1)
        pred, gt = torch.cat(preds), torch.cat(gts)
        losses = {"classification": classification}
        losses.update(regression_loss(pred, gt, pred.new_ones(pred.shape[0]), self.loss_settings))
        return losses
