"""Classification metrics: a torchmetrics collection that also takes soft targets."""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

__all__ = ["ClassificationMetrics", "classification_metrics", "hard_targets"]

MIN_CLASSES = 2
TOP5_FROM = 6  # top-5 accuracy means something only with more than five classes


def hard_targets(targets: torch.Tensor) -> torch.Tensor:
    """Class indices from ``targets``: ``(N, C)`` probabilities (mixup, cutmix) become their
    most likely class; ``(N,)`` indices pass through."""
    if targets.is_floating_point() and targets.ndim == 2:
        return targets.argmax(dim=1)
    return targets


class ClassificationMetrics(MetricCollection):
    """A :class:`~torchmetrics.MetricCollection` whose targets may be class probabilities.

    ``update(logits, targets)`` and ``collection(logits, targets)`` take ``(N,)`` class
    indices or ``(N, C)`` probabilities (scored against their most likely class).
    """

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*_hard_args(args), **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return super().forward(*_hard_args(args), **kwargs)


def _hard_args(args: tuple[Any, ...]) -> tuple[Any, ...]:
    if len(args) >= 2 and isinstance(args[1], torch.Tensor):
        return (args[0], hard_targets(args[1]), *args[2:])
    return args


def classification_metrics(num_classes: int) -> ClassificationMetrics:
    """``acc1`` (top-1 accuracy over all images), ``acc5`` (top-5, with more than five
    classes), ``f1`` (macro F1) and ``confmat`` (the ``(C, C)`` confusion matrix, rows the
    true classes)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise TypeError(f"num_classes must be an int, got {num_classes!r}")
    if num_classes < MIN_CLASSES:
        raise ValueError(f"classification metrics need at least 2 classes, got {num_classes}")
    metrics: dict[str, Any] = {
        "acc1": MulticlassAccuracy(num_classes=num_classes, top_k=1, average="micro"),
        "f1": MulticlassF1Score(num_classes=num_classes, average="macro"),
        "confmat": MulticlassConfusionMatrix(num_classes=num_classes),
    }
    if num_classes >= TOP5_FROM:
        metrics["acc5"] = MulticlassAccuracy(num_classes=num_classes, top_k=5, average="micro")
    # no compute groups: torchmetrics groups metrics whose states match after the first
    # update, and top-5 accuracy and macro F1 can match there (a batch of one class)
    return ClassificationMetrics(metrics, compute_groups=False)
