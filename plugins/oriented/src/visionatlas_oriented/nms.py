"""Greedy non-maximum suppression of rotated boxes (``torchvision.ops.nms`` semantics).

Boxes are ``(cx, cy, w, h, angle)`` (see :mod:`visionatlas_oriented.boxes`; le90 is not
required). The boxes are sorted by decreasing score once (ties keep their input order); the
exact IoU (:mod:`visionatlas_oriented.iou`) is computed once for every pair that can
suppress: circumscribed circles that meet, the same label for :func:`batched_rotated_nms`,
and two cheap upper bounds of the IoU above the threshold. A greedy loop in numpy over the
rows that suppress something then drops every box whose IoU with a kept higher-scoring box
exceeds the threshold. Memory grows with the number of such pairs, not with the square of
the number of boxes."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from visionatlas_oriented.iou import _PAIR_CHUNK, _box_table, _candidate_pairs, _dtype, _iou

__all__ = ["batched_rotated_nms", "rotated_nms"]

_BOUND_SLACK = 1e-4
"""Pairs whose IoU bounds fall short of the threshold by less than this still get the exact
IoU (the bounds are rounded too)."""


def rotated_nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Indices (int64) of the ``(N, 5)`` boxes kept by greedy NMS, in decreasing score
    order: a box is dropped when its IoU with a kept higher-scoring box is above
    ``iou_threshold``. Empty input gives an empty tensor."""
    return _nms(boxes, scores, None, iou_threshold)


def batched_rotated_nms(
    boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float
) -> Tensor:
    """:func:`rotated_nms` per label (``labels``: ``(N,)`` integers); boxes of different
    labels never suppress each other. Indices in decreasing score order over all labels."""
    return _nms(boxes, scores, labels, iou_threshold)


def _nms(boxes: Tensor, scores: Tensor, labels: Tensor | None, iou_threshold: float) -> Tensor:
    if boxes.dim() != 2 or boxes.shape[1] != 5:
        raise ValueError(
            f"boxes must have shape (N, 5) as (cx, cy, w, h, angle), got {tuple(boxes.shape)}"
        )
    count = boxes.shape[0]
    if scores.shape != (count,):
        raise ValueError(f"scores must have shape ({count},), got {tuple(scores.shape)}")
    if labels is not None and labels.shape != (count,):
        raise ValueError(f"labels must have shape ({count},), got {tuple(labels.shape)}")
    if not 0 <= iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    if count == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores.detach(), descending=True, stable=True).indices
    table = _box_table(boxes[order], _dtype(boxes))
    first, second = _candidate_pairs(table, table, upper=True)
    if labels is not None:
        sorted_labels = labels[order]
        same = sorted_labels[first] == sorted_labels[second]
        first, second = first[same], second[same]
    over = _overlapping(table, first, second, iou_threshold)
    kept = _greedy(count, first[over].cpu().numpy(), second[over].cpu().numpy())
    return order[torch.from_numpy(kept).to(order.device)]


def _overlapping(table: Tensor, first: Tensor, second: Tensor, threshold: float) -> Tensor:
    """Whether the IoU of each pair of columns of ``table`` is above ``threshold``. Two
    cheap upper bounds of the IoU go first, and only the pairs that pass both get the exact
    IoU: ``min(area) / max(area)``, and the IoU with the overlap of the boxes' axis-aligned
    bounding boxes in place of their intersection."""
    over = torch.zeros(first.shape[0], dtype=torch.bool, device=first.device)
    margin = threshold - _BOUND_SLACK
    for start in range(0, first.shape[0], _PAIR_CHUNK):
        a = table.index_select(1, first[start : start + _PAIR_CHUNK])
        b = table.index_select(1, second[start : start + _PAIR_CHUNK])
        area_a, area_b = 4 * a[2] * a[3], 4 * b[2] * b[3]
        smaller = torch.minimum(area_a, area_b)
        (reach_ax, reach_ay), (reach_bx, reach_by) = _reach(a), _reach(b)
        overlap_x = torch.minimum(a[0] + reach_ax, b[0] + reach_bx)
        overlap_x -= torch.maximum(a[0] - reach_ax, b[0] - reach_bx)
        overlap_y = torch.minimum(a[1] + reach_ay, b[1] + reach_by)
        overlap_y -= torch.maximum(a[1] - reach_ay, b[1] - reach_by)
        inter = torch.minimum(overlap_x.clamp_(min=0).mul_(overlap_y.clamp_(min=0)), smaller)
        bound = inter / (area_a + area_b - inter)
        maybe = (smaller > margin * torch.maximum(area_a, area_b)) & (bound > margin)
        index = maybe.nonzero(as_tuple=True)[0]
        exact = _iou(a.index_select(1, index), b.index_select(1, index)) > threshold
        over[start + index[exact]] = True
    return over


def _reach(table: Tensor) -> tuple[Tensor, Tensor]:
    """Half extents along x and y of the axis-aligned bounding boxes of a ``(7, P)`` table."""
    cos, sin = table[4].abs(), table[5].abs()
    return cos * table[2] + sin * table[3], sin * table[2] + cos * table[3]


def _greedy(
    count: int, first: npt.NDArray[np.int64], second: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Positions kept by greedy suppression, given the pairs ``first < second`` (sorted by
    ``first``) whose IoU is above the threshold, positions ordered by decreasing score."""
    keep = np.ones(count, dtype=bool)
    if first.size:
        starts = np.flatnonzero(np.diff(first, prepend=-1))
        ends = np.append(starts[1:], first.size)
        for row, start, end in zip(
            first[starts].tolist(), starts.tolist(), ends.tolist(), strict=True
        ):
            if keep[row]:  # final: only rows before it could drop it, and they are done
                keep[second[start:end]] = False
    return np.flatnonzero(keep).astype(np.int64)
