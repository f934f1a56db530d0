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

from visionatlas_oriented.iou import _PAIR_CHUNK, _box_table, _dtype, _iou

__all__ = ["batched_rotated_nms", "rotated_nms"]

_BAND_ROWS = 128
"""Rows of the sweep tested against their band of columns at once."""
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
    first, second = _self_pairs(table)
    if labels is not None:
        sorted_labels = labels.index_select(0, order)
        same = _where(sorted_labels.index_select(0, first) == sorted_labels.index_select(0, second))
        first, second = first.index_select(0, same), second.index_select(0, same)
    first, second = _overlapping(table, first, second, iou_threshold)
    higher = torch.minimum(first, second).cpu().numpy()
    lower = torch.maximum(first, second).cpu().numpy()
    by_row = np.argsort(higher, kind="stable")
    kept = _greedy(count, higher[by_row], lower[by_row])
    return order[torch.from_numpy(kept).to(order.device)]


def _self_pairs(table: Tensor) -> tuple[Tensor, Tensor]:
    """The pairs of columns of a ``(7, N)`` table whose circumscribed circles overlap, each
    once in some order. Sweep and prune: with the circles sorted by their left end ``x - r``,
    a block of rows only meets the later circles that start before the block's rightmost
    end, a band of columns rather than all of them."""
    usable = _where(table[6].isfinite())
    left = table[0].index_select(0, usable) - table[6].index_select(0, usable)
    left, by_left = torch.sort(left)
    sweep_order = usable.index_select(0, by_left)
    swept = table.index_select(1, sweep_order)
    right = swept[0] + swept[6]
    found_i, found_j = [], []
    for start in range(0, left.shape[0], _BAND_ROWS):
        stop = start + _BAND_ROWS
        end = int(torch.searchsorted(left, right[start:stop].max()))
        a, b = swept[:, start:stop, None], swept[:, None, start:end]
        distance = (a[0] - b[0]).square_().add_((a[1] - b[1]).square_())
        near = torch.triu(distance < (a[6] + b[6]).square_(), diagonal=1)  # later ones only
        i, j = near.nonzero(as_tuple=True)
        found_i.append(i + start)
        found_j.append(j + start)
    if not found_i:
        empty = torch.empty(0, dtype=torch.int64, device=table.device)
        return empty, empty
    first = sweep_order.index_select(0, torch.cat(found_i))
    return first, sweep_order.index_select(0, torch.cat(found_j))


def _overlapping(
    table: Tensor, first: Tensor, second: Tensor, threshold: float
) -> tuple[Tensor, Tensor]:
    """The pairs of columns of ``table`` whose IoU is above ``threshold``. Two
    cheap upper bounds of the IoU go first, and only the pairs that pass both get the exact
    IoU: ``min(area) / max(area)``, and the IoU with the overlap of the boxes' axis-aligned
    bounding boxes in place of their intersection."""
    margin = threshold - _BOUND_SLACK
    area = 4 * table[2] * table[3]
    cos, sin = table[4].abs(), table[5].abs()
    reach_x, reach_y = cos * table[2] + sin * table[3], sin * table[2] + cos * table[3]
    bounds = torch.stack((table[0] - reach_x, table[0] + reach_x, table[1] - reach_y,
                          table[1] + reach_y, area))  # fmt: skip
    found = []
    for start in range(0, first.shape[0], _PAIR_CHUNK):
        # index_select and nonzero: several times faster than tensor[index] and tensor[mask]
        pair_a, pair_b = first[start : start + _PAIR_CHUNK], second[start : start + _PAIR_CHUNK]
        area_a, area_b = area.index_select(0, pair_a), area.index_select(0, pair_b)
        keep = _where(torch.minimum(area_a, area_b) > margin * torch.maximum(area_a, area_b))
        pair_a, pair_b = pair_a.index_select(0, keep), pair_b.index_select(0, keep)
        a, b = bounds.index_select(1, pair_a), bounds.index_select(1, pair_b)
        overlap_x = torch.minimum(a[1], b[1]).sub_(torch.maximum(a[0], b[0])).clamp_(min=0)
        overlap_y = torch.minimum(a[3], b[3]).sub_(torch.maximum(a[2], b[2])).clamp_(min=0)
        inter = torch.minimum(overlap_x.mul_(overlap_y), torch.minimum(a[4], b[4]))
        maybe = _where(inter > margin * (a[4] + b[4] - inter))
        pair_a, pair_b = pair_a.index_select(0, maybe), pair_b.index_select(0, maybe)
        exact = _iou(table.index_select(1, pair_a), table.index_select(1, pair_b))
        above = _where(exact > threshold)
        found.append((pair_a.index_select(0, above), pair_b.index_select(0, above)))
    if not found:
        return first[:0], second[:0]
    return torch.cat([a for a, _ in found]), torch.cat([b for _, b in found])


def _where(mask: Tensor) -> Tensor:
    """The indices of the ``True`` entries of a boolean vector."""
    return mask.nonzero().squeeze(1)


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
