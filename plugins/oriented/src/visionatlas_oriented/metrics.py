"""Rotated mean average precision at IoU 0.5, as DOTA's task-1 evaluation computes it.

Per class, as the DOTA devkit's ``voc_eval`` does: the detections of the whole dataset are
ranked by score; each one is compared with the ground truths of its class in its image,
and the one of highest rotated IoU (:func:`~visionatlas_oriented.iou.rotated_box_iou`)
decides: above the threshold and not yet matched, a true positive (it is matched now);
above it and already matched, a false positive (a duplicate); above it and difficult,
neither; at or below it (or no ground truth), a false positive. Difficult ground truths
are not counted as positives. AP is the VOC07 11-point interpolation (the devkit's
default) or, with ``use_07_metric=False``, the area under the interpolated curve.

Two details differ from the devkit's code, not its intent: the 11 recall points are exact
tenths (the devkit's ``np.arange(0, 1.1, 0.1)`` makes 0.3, 0.6 and 0.7 a hair larger,
so a recall of exactly 0.3 misses its point there), and ties in score keep the order of
the inputs (the devkit's sort leaves it undefined). Boxes, not the original polygons, are
compared: ground truths are the min-area rectangles of their polygons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from visionatlas_detection.training import BACKGROUND

__all__ = ["RotatedMeanAP", "average_precision", "rotated_average_precisions"]


def average_precision(
    recall: np.ndarray, precision: np.ndarray, *, use_07_metric: bool = True
) -> float:
    """AP of a ranked list's ``recall`` and ``precision`` (one value per rank).

    VOC07 (``use_07_metric=True``): the mean, over the recalls 0, 0.1, ..., 1, of the
    highest precision at that recall or beyond (0 where it is never reached). Otherwise
    the area under the precision curve made non-increasing from the right.
    """
    recall = np.asarray(recall, dtype=np.float64).reshape(-1)
    precision = np.asarray(precision, dtype=np.float64).reshape(-1)
    if recall.shape != precision.shape:
        raise ValueError(
            f"recall and precision need one value per rank each, got {recall.size} and "
            f"{precision.size}"
        )
    if use_07_metric:
        total = 0.0
        for point in np.arange(11) / 10:
            reached = recall >= point
            total += float(precision[reached].max()) if reached.any() else 0.0
        return total / 11
    recalls = np.concatenate([[0.0], recall, [1.0]])
    precisions = np.concatenate([[0.0], precision, [0.0]])
    precisions = np.maximum.accumulate(precisions[::-1])[::-1]
    steps = np.flatnonzero(recalls[1:] != recalls[:-1])
    return float(np.sum((recalls[steps + 1] - recalls[steps]) * precisions[steps + 1]))


def _array(value: Any, dtype: type, width: int | None = None) -> np.ndarray:
    array: np.ndarray = torch.as_tensor(value).detach().cpu().numpy().astype(dtype)
    return array.reshape(-1, width) if width is not None else array.reshape(-1)


def _iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    from visionatlas_oriented.iou import rotated_box_iou

    if len(boxes1) == 0 or len(boxes2) == 0:
        return np.zeros((len(boxes1), len(boxes2)))
    iou = rotated_box_iou(torch.from_numpy(boxes1), torch.from_numpy(boxes2))
    return np.asarray(iou.detach().cpu().numpy(), dtype=np.float64)


def rotated_average_precisions(
    preds: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    *,
    num_classes: int,
    iou_threshold: float = 0.5,
    use_07_metric: bool = True,
) -> dict[int, float]:
    """AP of each class label ``0 .. num_classes - 1`` that has a ground truth not difficult.

    ``num_classes`` counts the background, as torchvision's detectors do (the model's labels
    ``["__background__", *class names]``: labels ``1 .. K`` are the classes, ``K + 1`` of
    them in all).

    ``preds[i]`` (``boxes`` ``(K, 5)``, ``scores``, ``labels``) are the detections of the
    image whose ground truth is ``targets[i]`` (``boxes``, ``labels``, optionally
    ``difficult``); boxes are ``(cx, cy, w, h, angle)``.
    """
    if len(preds) != len(targets):
        raise ValueError(
            f"{len(preds)} predictions for {len(targets)} targets; give one of each per image"
        )
    images = []
    for pred, target in zip(preds, targets, strict=True):
        gt_labels = _array(target["labels"], np.int64)
        difficult = target.get("difficult")
        image = {
            "boxes": _array(pred["boxes"], np.float64, 5),
            "scores": _array(pred["scores"], np.float64),
            "labels": _array(pred["labels"], np.int64),
            "gt_boxes": _array(target["boxes"], np.float64, 5),
            "gt_labels": gt_labels,
            "difficult": (
                np.zeros(len(gt_labels), dtype=bool)
                if difficult is None
                else _array(difficult, np.bool_)
            ),
        }
        for key in ("labels", "gt_labels"):
            outside = image[key][(image[key] < 0) | (image[key] >= num_classes)]
            if outside.size:
                raise ValueError(
                    f"label {int(outside[0])} is not a class label: with num_classes="
                    f"{num_classes} labels run from 0 to {num_classes - 1}"
                )
        images.append(image)
    result: dict[int, float] = {}
    for label in range(num_classes):
        positives = sum(int(np.sum((im["gt_labels"] == label) & ~im["difficult"])) for im in images)
        if positives == 0:
            continue
        result[label] = _class_ap(images, label, positives, iou_threshold, use_07_metric)
    return result


def _class_ap(
    images: list[dict[str, np.ndarray]],
    label: int,
    positives: int,
    iou_threshold: float,
    use_07_metric: bool,
) -> float:
    scores, owners, overlaps, hard = [], [], [], []
    for index, image in enumerate(images):
        mine, theirs = image["labels"] == label, image["gt_labels"] == label
        scores.append(image["scores"][mine])
        owners.append(np.full(int(mine.sum()), index))
        overlaps.append(_iou(image["boxes"][mine], image["gt_boxes"][theirs]))
        hard.append(image["difficult"][theirs])
    score, owner = np.concatenate(scores), np.concatenate(owners)
    row = np.concatenate([np.arange(len(s)) for s in scores])
    matched = [np.zeros(len(h), dtype=bool) for h in hard]
    order = np.argsort(-score, kind="stable")
    hits, misses = np.zeros(len(order)), np.zeros(len(order))
    for rank, detection in enumerate(order):
        image, j = owner[detection], row[detection]
        ious = overlaps[image][j]
        best = int(np.argmax(ious)) if ious.size else -1
        if best < 0 or ious[best] <= iou_threshold:
            misses[rank] = 1
        elif hard[image][best]:
            continue
        elif not matched[image][best]:
            hits[rank], matched[image][best] = 1, True
        else:
            misses[rank] = 1
    tp, fp = np.cumsum(hits), np.cumsum(misses)
    recall = tp / positives
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return average_precision(recall, precision, use_07_metric=use_07_metric)


class RotatedMeanAP(Metric):
    """DOTA task-1 mAP of rotated boxes: ``map_<threshold * 100>`` (``map_50`` by default;
    the mean over the classes with a ground truth not difficult, -1 when none has) and
    ``ap_<threshold * 100>_<class name>`` for each class (-1 for one without ground truth).

    ``class_names`` are the names of the labels ``1 .. K`` (0 is the background), as
    ``labels[1:]`` of the model's ``["__background__", *class names]``; the model's full
    list works too (a leading ``"__background__"`` is dropped).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    pred_boxes: list[Tensor]
    pred_scores: list[Tensor]
    pred_labels: list[Tensor]
    gt_boxes: list[Tensor]
    gt_labels: list[Tensor]
    gt_difficult: list[Tensor]

    def __init__(
        self,
        class_names: Sequence[str],
        iou_threshold: float = 0.5,
        use_07_metric: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        names = list(class_names)
        self.class_names = names[1:] if names[:1] == [BACKGROUND] else names
        self.iou_threshold = iou_threshold
        self.use_07_metric = use_07_metric
        for name in (
            "pred_boxes", "pred_scores", "pred_labels", "gt_boxes", "gt_labels", "gt_difficult",
        ):  # fmt: skip
            self.add_state(name, default=[], dist_reduce_fx=None)

    def update(
        self, preds: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]]
    ) -> None:
        """Add the detections ``preds`` of the images whose ground truths are ``targets``."""
        if len(preds) != len(targets):
            raise ValueError(
                f"{len(preds)} predictions for {len(targets)} targets; give one of each per image"
            )
        for pred, target in zip(preds, targets, strict=True):
            labels = torch.as_tensor(target["labels"]).detach().reshape(-1).long()
            difficult = target.get("difficult")
            self.pred_boxes.append(torch.as_tensor(pred["boxes"]).detach().float().reshape(-1, 5))
            self.pred_scores.append(torch.as_tensor(pred["scores"]).detach().float().reshape(-1))
            self.pred_labels.append(torch.as_tensor(pred["labels"]).detach().reshape(-1).long())
            self.gt_boxes.append(torch.as_tensor(target["boxes"]).detach().float().reshape(-1, 5))
            self.gt_labels.append(labels)
            self.gt_difficult.append(
                torch.zeros_like(labels, dtype=torch.bool)
                if difficult is None
                else torch.as_tensor(difficult).detach().reshape(-1).bool()
            )

    def compute(self) -> dict[str, Tensor]:
        """``map_50`` and ``ap_50_<class name>`` (for the default threshold 0.5)."""
        preds = [
            {"boxes": b, "scores": s, "labels": lab}
            for b, s, lab in zip(self.pred_boxes, self.pred_scores, self.pred_labels, strict=True)
        ]
        targets = [
            {"boxes": b, "labels": lab, "difficult": d}
            for b, lab, d in zip(self.gt_boxes, self.gt_labels, self.gt_difficult, strict=True)
        ]
        aps = rotated_average_precisions(
            preds,
            targets,
            num_classes=len(self.class_names) + 1,
            iou_threshold=self.iou_threshold,
            use_07_metric=self.use_07_metric,
        )
        aps.pop(0, None)  # the background is no class, whatever a target says
        suffix = f"{round(self.iou_threshold * 100):d}"
        mean = float(np.mean(list(aps.values()))) if aps else -1.0
        result = {f"map_{suffix}": torch.tensor(mean)}
        for label, name in enumerate(self.class_names, start=1):
            result[f"ap_{suffix}_{name}"] = torch.tensor(aps.get(label, -1.0))
        return result
