"""COCO mean average precision of detections (boxes, and masks for instance segmentation).

torchmetrics' ``MeanAveragePrecision`` with the ``pycocotools`` backend, so the figures are
COCO's own evaluation: mAP over IoU 0.5:0.95, at 0.5 and 0.75, and for small, medium and
large objects. :class:`DetectionMeanAP` takes a detector's eval outputs and the dataset's
targets as they are (mask probabilities ``(N, 1, H, W)`` become ``mask > 0.5``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics.detection import MeanAveragePrecision

__all__ = ["MASK_THRESHOLD", "DetectionMeanAP"]

MASK_THRESHOLD = 0.5
"""A predicted mask's pixels count as the object where its probability exceeds this."""


def _prediction(output: Mapping[str, Any], masks: bool) -> dict[str, Tensor]:
    out = {
        "boxes": output["boxes"].detach().float().as_subclass(Tensor),
        "scores": output["scores"].detach(),
        "labels": output["labels"].detach(),
    }
    if masks:
        probs = output["masks"].detach()
        out["masks"] = (probs[:, 0] if probs.dim() == 4 else probs) > MASK_THRESHOLD
    return out


def _truth(target: Mapping[str, Any], masks: bool) -> dict[str, Tensor]:
    out = {
        "boxes": torch.as_tensor(target["boxes"]).float().as_subclass(Tensor),
        "labels": torch.as_tensor(target["labels"]),
    }
    if "iscrowd" in target:
        out["iscrowd"] = torch.as_tensor(target["iscrowd"])
    if masks:
        out["masks"] = torch.as_tensor(target["masks"]).as_subclass(Tensor).bool()
    return out


class DetectionMeanAP(MeanAveragePrecision):
    """COCO mAP through pycocotools; with ``masks=True`` for boxes (``bbox_*`` keys) and
    masks (``segm_*`` keys). ``class_metrics`` adds per-class AP."""

    def __init__(self, *, masks: bool = False, class_metrics: bool = False) -> None:
        super().__init__(
            iou_type=("bbox", "segm") if masks else "bbox",
            backend="pycocotools",
            class_metrics=class_metrics,
        )
        self.with_masks = masks

    def update(
        self, preds: Sequence[Mapping[str, Any]], target: Sequence[Mapping[str, Any]]
    ) -> None:
        super().update(
            [_prediction(p, self.with_masks) for p in preds],
            [_truth(t, self.with_masks) for t in target],
        )

    def compute(self) -> dict[str, Tensor]:
        """COCO's figures; the class list and per-class values only with ``class_metrics``."""
        result: dict[str, Tensor] = super().compute()
        if self.class_metrics:
            return result
        return {k: v for k, v in result.items() if k != "classes" and "per_class" not in k}
