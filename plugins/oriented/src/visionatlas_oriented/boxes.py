"""Rotated boxes as tensors: the box convention, conversions and validity checks.

Every function of this package takes boxes as ``(cx, cy, w, h, angle)``:

* centre ``(cx, cy)``, width ``w`` and height ``h`` in pixels, ``angle`` in radians, in image
  coordinates (x to the right, y down, so a positive angle turns x towards y: clockwise on
  screen);
* "long-edge 90" (le90): ``w >= h``, ``w`` is the side along ``angle``, and ``angle`` lies in
  the half-open range ``[ANGLE_MIN, ANGLE_MAX) = [-pi/2, pi/2)``. Every rectangle but a
  square has exactly one such form (a square's angle is ambiguous modulo pi/2);
* corners, with ``c = (cx, cy)``, ``u = (cos a, sin a) * w/2`` and ``v = (-sin a, cos a) * h/2``,
  in the order ``c-u-v, c+u-v, c+u+v, c-u+v`` (for angle 0: top-left, top-right,
  bottom-right, bottom-left). The shoelace formula gives this order a positive area.

:func:`normalize_boxes` brings any ``(cx, cy, w, h, angle)`` into this form;
:func:`boxes_problem` says why a tensor is not in it; :func:`polygon_problem` says why a
4-point polygon (a DOTA annotation, say) cannot become a box.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

__all__ = [
    "ANGLE_MAX",
    "ANGLE_MIN",
    "box_area",
    "boxes_problem",
    "boxes_to_corners",
    "corners_to_boxes",
    "normalize_boxes",
    "polygon_problem",
]

ANGLE_MIN = -math.pi / 2
"""The smallest le90 angle (included)."""
ANGLE_MAX = math.pi / 2
"""The end of the le90 angle range (excluded)."""

_PAIRS_FROM = [0, 1, 2, 3, 0, 1]
_PAIRS_TO = [1, 2, 3, 0, 2, 3]
"""Point pairs whose directions :func:`corners_to_boxes` tries: the edges, the diagonals."""

_MIN_POLYGON_AREA = 1e-6
"""Polygons with a smaller area (px^2) are degenerate."""


def _wrap_angle(angle: Tensor) -> Tensor:
    """``angle`` moved by multiples of pi into ``[ANGLE_MIN, ANGLE_MAX)``."""
    wrapped = torch.remainder(angle - ANGLE_MIN, math.pi) + ANGLE_MIN
    # rounding can land on the excluded end of the range
    return torch.where(wrapped >= ANGLE_MAX, wrapped - math.pi, wrapped)


def normalize_boxes(boxes: Tensor) -> Tensor:
    """Any ``(..., 5)`` boxes ``(cx, cy, w, h, angle)`` (either side the longer, any angle) as
    the same rectangles in le90 form: ``w`` and ``h`` swapped with ``angle + pi/2`` where
    ``w < h``, then the angle wrapped into ``[-pi/2, pi/2)``. Differentiable."""
    cx, cy, w, h, angle = boxes.unbind(-1)
    swap = w < h
    long_side = torch.where(swap, h, w)
    short_side = torch.where(swap, w, h)
    angle = torch.where(swap, angle + math.pi / 2, angle)
    return torch.stack((cx, cy, long_side, short_side, _wrap_angle(angle)), dim=-1)


def boxes_to_corners(boxes: Tensor) -> Tensor:
    """The ``(..., 4, 2)`` corners ``c-u-v, c+u-v, c+u+v, c-u+v`` of ``(..., 5)`` boxes
    ``(cx, cy, w, h, angle)`` (le90 or not; see the module docstring)."""
    centre = boxes[..., :2]
    w, h, angle = boxes[..., 2], boxes[..., 3], boxes[..., 4]
    cos, sin = torch.cos(angle), torch.sin(angle)
    u = torch.stack((cos * w, sin * w), dim=-1) / 2
    v = torch.stack((-sin * h, cos * h), dim=-1) / 2
    return torch.stack((centre - u - v, centre + u - v, centre + u + v, centre - u + v), dim=-2)


def corners_to_boxes(corners: Tensor) -> Tensor:
    """The le90 boxes ``(..., 5)`` of the minimum-area rectangles enclosing 4 points each,
    given as ``(..., 4, 2)`` or ``(..., 8)`` (``x1, y1, ..., x4, y4``), as ``cv2.minAreaRect``.

    The points need not form a rectangle (DOTA quadrilaterals often do not), nor a convex
    polygon: the minimum rectangle has a side along an edge of the points' convex hull, so
    the directions of the 4 edges and the 2 diagonals are tried and the smallest enclosing
    rectangle wins. Exact for rectangles: the corners of :func:`boxes_to_corners` come back
    as the same box. Zero-length edges are skipped; 4 equal points give a box of size 0.
    """
    if corners.shape[-1] == 8:
        points = corners.reshape(*corners.shape[:-1], 4, 2)
    elif corners.dim() >= 2 and corners.shape[-2:] == (4, 2):
        points = corners
    else:
        raise ValueError(
            f"expected corners of shape (..., 4, 2) or (..., 8), got {tuple(corners.shape)}"
        )
    if not points.is_floating_point():
        points = points.float()
    origin = points.mean(dim=-2, keepdim=True)
    local = points - origin  # (..., 4, 2), centred for precision
    # the 4 edges and the 2 diagonals: the convex hull's edges are among them
    edges = local[..., _PAIRS_TO, :] - local[..., _PAIRS_FROM, :]  # (..., 6, 2)
    length = torch.linalg.vector_norm(edges, dim=-1)  # (..., 6)
    scale = torch.linalg.vector_norm(local, dim=-1).amax(dim=-1, keepdim=True)
    usable = length > scale * (8 * torch.finfo(points.dtype).eps)
    direction = edges / length.clamp_min(torch.finfo(points.dtype).tiny).unsqueeze(-1)
    direction = torch.where(usable.unsqueeze(-1), direction, torch.zeros_like(direction))
    normal = torch.stack((-direction[..., 1], direction[..., 0]), dim=-1)
    # projections of the 4 points on each direction and its normal: (..., direction, point)
    along = (direction.unsqueeze(-2) * local.unsqueeze(-3)).sum(-1)
    across = (normal.unsqueeze(-2) * local.unsqueeze(-3)).sum(-1)
    along_lo, along_hi = along.amin(-1), along.amax(-1)
    across_lo, across_hi = across.amin(-1), across.amax(-1)
    area = (along_hi - along_lo) * (across_hi - across_lo)
    area = torch.where(usable, area, torch.full_like(area, math.inf))
    best = area.argmin(dim=-1, keepdim=True)  # (..., 1), the first of equal areas

    def pick(values: Tensor) -> Tensor:
        return values.gather(-1, best).squeeze(-1)

    dx, dy = pick(direction[..., 0]), pick(direction[..., 1])
    mid_along = (pick(along_lo) + pick(along_hi)) / 2
    mid_across = (pick(across_lo) + pick(across_hi)) / 2
    cx = origin[..., 0, 0] + dx * mid_along - dy * mid_across
    cy = origin[..., 0, 1] + dy * mid_along + dx * mid_across
    w = pick(along_hi) - pick(along_lo)
    h = pick(across_hi) - pick(across_lo)
    angle = torch.atan2(dy, dx)
    return normalize_boxes(torch.stack((cx, cy, w, h, angle), dim=-1))


def box_area(boxes: Tensor) -> Tensor:
    """The areas ``w * h`` (px^2) of ``(..., 5)`` boxes ``(cx, cy, w, h, angle)``."""
    return boxes[..., 2] * boxes[..., 3]


def _orientation(
    a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], c: npt.NDArray[np.float64]
) -> float:
    """Twice the signed area of the triangle ``a, b, c``."""
    return float((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))


def _segments_cross(
    a: npt.NDArray[np.float64],
    b: npt.NDArray[np.float64],
    c: npt.NDArray[np.float64],
    d: npt.NDArray[np.float64],
) -> bool:
    """Whether segments ``a-b`` and ``c-d`` cross at a point inside both."""
    return (
        _orientation(a, b, c) * _orientation(a, b, d) < 0
        and _orientation(c, d, a) * _orientation(c, d, b) < 0
    )


def polygon_problem(points: npt.ArrayLike) -> str | None:
    """Why a polygon of 4 points ``(x, y)`` (a ``(4, 2)`` array, in order) cannot become a
    box: wrong shape, non-finite coordinates, self-intersecting (edges 0-1 and 2-3, or
    1-2 and 3-0, cross) or zero area (below 1e-6 px^2); ``None`` when it is usable.

    Either orientation is fine, and so is a repeated point (a triangle):
    :func:`corners_to_boxes` encloses any of these.
    """
    array = np.asarray(points, dtype=np.float64)
    if array.shape != (4, 2):
        return f"expected 4 points (x, y), got an array of shape {array.shape}"
    if not np.isfinite(array).all():
        return f"coordinates are not all finite: {array.tolist()}"
    for (i, j), (k, m) in (((0, 1), (2, 3)), ((1, 2), (3, 0))):
        if _segments_cross(array[i], array[j], array[k], array[m]):
            return f"self-intersecting: edge {i}-{j} crosses edge {k}-{m}"
    x, y = array[:, 0], array[:, 1]
    area = 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    if abs(area) < _MIN_POLYGON_AREA:
        return f"zero area ({abs(area):.3g} px^2 < {_MIN_POLYGON_AREA:g})"
    return None


def boxes_problem(boxes: Tensor) -> str | None:
    """Why ``boxes`` is not an ``(N, 5)`` tensor of valid le90 boxes
    ``(cx, cy, w, h, angle)``: wrong shape or dtype, a non-finite value, ``w`` or ``h`` not
    positive, ``w < h``, or an angle outside ``[-pi/2, pi/2)``; the message names the first
    offending box, its value and the accepted range. ``None`` when all are valid."""
    if boxes.dim() != 2 or boxes.shape[1] != 5:
        return (
            "expected boxes of shape (N, 5) as (cx, cy, w, h, angle), "
            f"got shape {tuple(boxes.shape)}"
        )
    if not boxes.is_floating_point():
        return f"expected a floating-point tensor of boxes, got {boxes.dtype}"
    finite = torch.isfinite(boxes).all(dim=1)
    if not bool(finite.all()):
        index = int((~finite).nonzero()[0, 0])
        return f"box {index} has a non-finite value: {boxes[index].tolist()}"
    w, h, angle = boxes[:, 2], boxes[:, 3], boxes[:, 4]
    if (i := _first(w <= 0)) is not None:
        return f"box {i} has width w={_num(w[i])}; w and h must be > 0"
    if (i := _first(h <= 0)) is not None:
        return f"box {i} has height h={_num(h[i])}; w and h must be > 0"
    if (i := _first(w < h)) is not None:
        return (
            f"box {i} has w={_num(w[i])} < h={_num(h[i])}; le90 boxes have w >= h "
            "(normalize_boxes converts)"
        )
    if (i := _first((angle < ANGLE_MIN) | (angle >= ANGLE_MAX))) is not None:
        return (
            f"box {i} has angle {_num(angle[i])} rad, outside [-pi/2, pi/2) = "
            f"[{ANGLE_MIN:.7f}, {ANGLE_MAX:.7f}) (normalize_boxes wraps angles)"
        )
    return None


def _first(bad: Tensor) -> int | None:
    """The index of the first ``True`` of a boolean vector, if any."""
    found = bad.nonzero()
    return int(found[0, 0]) if found.numel() else None


def _num(value: Tensor) -> str:
    return f"{float(value):.9g}"
