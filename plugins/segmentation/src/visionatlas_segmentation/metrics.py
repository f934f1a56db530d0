"""Semantic-segmentation metrics, through torchmetrics: mean IoU, pixel accuracy, per class.

Pixels marked ``ignore_index`` count nowhere. Mean IoU averages the classes present in the
predictions or the targets (a class absent from both is left out, as torchmetrics'
macro average does); ``iou_<class>`` gives each class's IoU.
"""

from __future__ import annotations

from collections.abc import Sequence

from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex
from torchmetrics.wrappers import ClasswiseWrapper

from visionatlas_segmentation.data.folders import IGNORE_INDEX

__all__ = ["semantic_metrics"]


def semantic_metrics(labels: Sequence[str], ignore_index: int = IGNORE_INDEX) -> MetricCollection:
    """``miou``, ``pixel_acc`` and ``iou_<class>`` of ``(N, C, H, W)`` logits against
    ``(N, H, W)`` class-index targets, one class per name in ``labels``."""
    classes = len(labels)
    return MetricCollection(
        {
            "miou": MulticlassJaccardIndex(classes, average="macro", ignore_index=ignore_index),
            "pixel_acc": MulticlassAccuracy(classes, average="micro", ignore_index=ignore_index),
            "iou": ClasswiseWrapper(
                MulticlassJaccardIndex(classes, average="none", ignore_index=ignore_index),
                labels=list(labels),
                prefix="iou_",
            ),
        }
    )
