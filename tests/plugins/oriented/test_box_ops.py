"""Rotated-box operations: conversions, checks, exact IoU and NMS against shapely, and the
Gaussian losses against their textbook matrix formulas."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from visionatlas_oriented import iou as iou_module
from visionatlas_oriented import nms as nms_module
from visionatlas_oriented.boxes import (
    ANGLE_MAX,
    ANGLE_MIN,
    box_area,
    boxes_problem,
    boxes_to_corners,
    corners_to_boxes,
    normalize_boxes,
    polygon_problem,
)
from visionatlas_oriented.gaussian import (
    box_to_gaussian,
    gwd_loss,
    kld_loss,
    probiou,
    probiou_loss,
)
from visionatlas_oriented.iou import rotated_box_iou, rotated_box_iou_aligned
from visionatlas_oriented.nms import batched_rotated_nms, rotated_nms

LOSSES: list[Callable[[Tensor, Tensor], Tensor]] = [probiou_loss, kld_loss, gwd_loss]


def _shapely() -> Any:
    return pytest.importorskip("shapely.geometry")


def random_boxes(
    count: int, *, seed: int, dtype: torch.dtype = torch.float64, extent: float = 100.0
) -> Tensor:
    """le90 boxes with centres in ``[0, extent)^2``, sides 2 to 40 px, any angle."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.rand(count, 2, generator=generator, dtype=torch.float64) * extent
    sides = torch.rand(count, 2, generator=generator, dtype=torch.float64) * 38 + 2
    angles = (torch.rand(count, 1, generator=generator, dtype=torch.float64) - 0.5) * math.pi
    return normalize_boxes(torch.cat((centres, sides, angles), dim=1)).to(dtype)


def polygons(boxes: Tensor) -> list[Any]:
    geometry = _shapely()
    return [geometry.Polygon(c) for c in boxes_to_corners(boxes.double()).numpy()]


def polygon_iou(a: Any, b: Any) -> float:
    inter = float(a.intersection(b).area)
    union = float(a.area) + float(b.area) - inter
    return inter / union if union > 0 else 0.0


def shapely_iou(boxes1: Tensor, boxes2: Tensor) -> np.ndarray:
    p1, p2 = polygons(boxes1), polygons(boxes2)
    return np.array([[polygon_iou(a, b) for b in p2] for a in p1]).reshape(len(p1), len(p2))


def shapely_nms(boxes: Tensor, scores: Tensor, threshold: float) -> list[int]:
    """Greedy NMS over shapely polygons, one pair at a time: the reference."""
    shapes = polygons(boxes)
    order = sorted(range(len(shapes)), key=lambda i: -float(scores[i]))
    suppressed: set[int] = set()
    kept = []
    for position, i in enumerate(order):
        if i in suppressed:
            continue
        kept.append(i)
        for j in order[position + 1 :]:
            if j not in suppressed and polygon_iou(shapes[i], shapes[j]) > threshold:
                suppressed.add(j)
    return kept


def same_rectangle(a: Tensor, b: Tensor, atol: float) -> None:
    """``a`` and ``b`` (``(N, 5)``) describe the same rectangles (corner sets match)."""
    ca, cb = boxes_to_corners(a.double()), boxes_to_corners(b.double())
    distance = (ca[:, :, None] - cb[:, None]).norm(dim=-1).amin(dim=2).amax(dim=1)
    assert float(distance.max()) < atol


# --- conventions and conversions -------------------------------------------------------


def test_corner_order_is_the_documented_one() -> None:
    corners = boxes_to_corners(torch.tensor([[10.0, 20.0, 8.0, 4.0, 0.0]]))[0]
    expected = [[6.0, 18.0], [14.0, 18.0], [14.0, 22.0], [6.0, 22.0]]
    torch.testing.assert_close(corners, torch.tensor(expected))
    x, y = corners[:, 0], corners[:, 1]
    assert float((x * y.roll(-1) - y * x.roll(-1)).sum()) > 0  # positive shoelace area


def test_normalize_boxes_gives_le90_and_the_same_rectangles() -> None:
    generator = torch.Generator().manual_seed(0)
    boxes = torch.rand(200, 5, generator=generator, dtype=torch.float64) * 50 + 1
    boxes[:, 4] = (torch.rand(200, generator=generator, dtype=torch.float64) - 0.5) * 20
    boxes[:3, 4] = torch.tensor([ANGLE_MAX, ANGLE_MIN, 3 * math.pi / 2], dtype=torch.float64)
    normal = normalize_boxes(boxes)
    assert boxes_problem(normal) is None
    assert boxes_problem(normal.float()) is None
    same_rectangle(normal, boxes, atol=1e-9)
    torch.testing.assert_close(normalize_boxes(normal), normal)
    torch.testing.assert_close(box_area(normal), boxes[:, 2] * boxes[:, 3])


def test_corners_round_trip() -> None:
    for dtype, atol in ((torch.float64, 1e-9), (torch.float32, 1e-3)):
        boxes = random_boxes(300, seed=1, dtype=dtype, extent=1000)
        back = corners_to_boxes(boxes_to_corners(boxes))
        assert back.dtype == dtype
        assert boxes_problem(back) is None
        same_rectangle(back, boxes, atol=atol)
        torch.testing.assert_close(back[:, :4], boxes[:, :4], atol=atol, rtol=0)
        turn = (back[:, 4] - boxes[:, 4]).remainder(math.pi)  # angle modulo pi
        assert float(torch.minimum(turn, math.pi - turn).max()) < 1e-4
    flat = corners_to_boxes(boxes_to_corners(boxes).flatten(-2))
    torch.testing.assert_close(flat, back)


def test_corners_to_boxes_is_the_minimum_area_rectangle() -> None:
    geometry = _shapely()
    generator = torch.Generator().manual_seed(2)
    quads = torch.rand(40, 4, 2, generator=generator, dtype=torch.float64) * 100
    quads[0] = torch.tensor([[0.0, 0.0], [10.0, 0.0], [10.0, 0.0], [0.0, 5.0]])  # a triangle
    boxes = corners_to_boxes(quads)
    for quad, box in zip(quads.numpy(), boxes, strict=True):
        hull = geometry.MultiPoint(quad).convex_hull
        ours = geometry.Polygon(boxes_to_corners(box[None])[0].numpy())
        # a minimum rectangle (there can be several of that area: the triangle has two)
        assert float(box[2] * box[3]) == pytest.approx(hull.minimum_rotated_rectangle.area)
        assert ours.buffer(1e-7).contains(hull)
    equal = corners_to_boxes(torch.full((4, 2), 3.0))
    torch.testing.assert_close(equal, torch.tensor([3.0, 3.0, 0.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match=r"\(\.\.\., 4, 2\)"):
        corners_to_boxes(torch.zeros(3, 2))


def test_polygon_problem() -> None:
    assert polygon_problem(np.array([[0, 0], [4, 0], [4, 3], [0, 3]])) is None
    assert polygon_problem(np.array([[0, 0], [0, 3], [4, 3], [4, 0]])) is None  # clockwise
    assert polygon_problem(np.array([[0, 0], [5, 1], [4, 4], [1, 3]])) is None  # not a rectangle
    # 3 distinct points: a triangle is usable, its rectangle is well defined
    assert polygon_problem(np.array([[0, 0], [4, 0], [4, 0], [0, 3]])) is None
    bowtie = polygon_problem(np.array([[0, 0], [4, 4], [4, 0], [0, 4]]))
    assert bowtie is not None
    assert "self-intersecting" in bowtie
    assert "0-1" in bowtie
    crossed = polygon_problem(np.array([[0, 0], [4, 0], [0, 4], [4, 4]]))
    assert crossed is not None
    assert "1-2 crosses edge 3-0" in crossed
    collinear = polygon_problem(np.array([[0, 0], [1, 1], [2, 2], [3, 3]]))
    assert collinear is not None
    assert "zero area" in collinear
    three_on_a_line = polygon_problem(np.array([[0, 0], [2, 0], [2, 0], [5, 0]]))
    assert three_on_a_line is not None
    assert "zero area" in three_on_a_line
    point = polygon_problem(np.ones((4, 2)))
    assert point is not None
    assert "zero area" in point
    infinite = polygon_problem(np.array([[0, 0], [np.inf, 0], [4, 3], [0, 3]]))
    assert infinite is not None
    assert "finite" in infinite
    shape = polygon_problem(np.zeros((3, 2)))
    assert shape is not None
    assert "(3, 2)" in shape


@pytest.mark.parametrize(
    ("boxes", "words"),
    [
        (torch.zeros(3, 4), ["(N, 5)", "(3, 4)"]),
        (torch.zeros(3, 5, dtype=torch.int64), ["floating", "int64"]),
        (torch.tensor([[0.0, 0, 4, 2, 0], [0, 0, 4, 2, math.nan]]), ["box 1", "nan"]),
        (torch.tensor([[0.0, 0, 4, 2, 0], [0, 0, 0, 0, 0]]), ["box 1", "w=0", "> 0"]),
        (torch.tensor([[0.0, 0, 4, -2, 0]]), ["box 0", "h=-2", "> 0"]),
        (torch.tensor([[0.0, 0, 2, 4, 0]]), ["box 0", "w=2 < h=4", "normalize_boxes"]),
        (
            torch.tensor([[0.0, 0, 4, 2, 0], [0, 0, 4, 2, math.pi / 2]], dtype=torch.float64),
            ["box 1", "1.57079633", "[-pi/2, pi/2)", "[-1.5707963, 1.5707963)"],
        ),
        (torch.tensor([[0.0, 0, 4, 2, -1.6]]), ["box 0", "-1.6", "[-pi/2, pi/2)"]),
    ],
)
def test_boxes_problem_names_the_box_and_the_range(boxes: Tensor, words: list[str]) -> None:
    problem = boxes_problem(boxes)
    assert problem is not None
    for word in words:
        assert word in problem


def test_boxes_problem_accepts_the_range_ends() -> None:
    for dtype in (torch.float32, torch.float64):
        below = math.nextafter(math.pi / 2, 0.0) if dtype == torch.float64 else 1.5707963
        boxes = torch.tensor([[0, 0, 4, 2, ANGLE_MIN], [0, 0, 4, 4, below]], dtype=dtype)
        assert boxes_problem(boxes) is None
        assert boxes_problem(torch.zeros(0, 5, dtype=dtype)) is None


# --- IoU ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_iou_matches_shapely(dtype: torch.dtype) -> None:
    boxes1 = random_boxes(45, seed=3, dtype=dtype, extent=60)
    boxes2 = random_boxes(40, seed=4, dtype=dtype, extent=60)
    ours = rotated_box_iou(boxes1, boxes2)
    assert ours.dtype == dtype
    assert ours.shape == (45, 40)
    reference = shapely_iou(boxes1, boxes2)
    assert (reference > 0).mean() > 0.2  # many overlapping pairs
    tolerance = 1e-4 if dtype == torch.float32 else 1e-10
    np.testing.assert_allclose(ours.double().numpy(), reference, rtol=tolerance, atol=1e-6)
    aligned = rotated_box_iou_aligned(boxes1[:40], boxes2)
    np.testing.assert_allclose(
        aligned.double().numpy(), np.diag(reference), rtol=tolerance, atol=1e-6
    )


def test_iou_of_near_parallel_and_nearly_coincident_edges() -> None:
    """Shifted copies along the box's own axes, turned by tiny angles and by quarter turns:
    edges that coincide up to rounding must be counted once."""
    generator = torch.Generator().manual_seed(5)
    base = random_boxes(600, seed=6, extent=1000)
    shift = torch.rand(600, 2, generator=generator, dtype=torch.float64)
    shift[::2, 1] = 0
    shift[1::2, 0] = 0
    cos, sin = torch.cos(base[:, 4]), torch.sin(base[:, 4])
    du, dv = shift[:, 0] * base[:, 2], shift[:, 1] * base[:, 3]
    other = base.clone()
    other[:, 0] += cos * du - sin * dv
    other[:, 1] += sin * du + cos * dv
    tiny = torch.tensor([0.0, 1e-9, -1e-7, 1e-6, -1e-4, 1e-2], dtype=torch.float64)
    other[:, 4] += tiny[torch.arange(600) % 6] + math.pi / 2 * (torch.arange(600) % 4)
    for dtype, atol in ((torch.float32, 2e-5), (torch.float64, 1e-11)):
        ours = rotated_box_iou_aligned(base.to(dtype), other.to(dtype)).double().numpy()
        reference = [
            polygon_iou(a, b)
            for a, b in zip(polygons(base.to(dtype)), polygons(other.to(dtype)), strict=True)
        ]
        np.testing.assert_allclose(ours, reference, rtol=0, atol=atol)


def test_iou_special_cases() -> None:
    box = torch.tensor([[50.0, 40.0, 30.0, 10.0, 0.3]])
    same = rotated_box_iou(box, box)
    assert float(same) == pytest.approx(1.0, abs=1e-6)
    # inside: a smaller box with the same centre, turned
    inner = torch.tensor([[50.0, 40.0, 8.0, 4.0, -1.0]])
    assert float(rotated_box_iou(inner, box)) == pytest.approx(32 / 300, rel=1e-5)
    # touching along an edge (shifted by h along v), at a corner, and far apart
    cos, sin = math.cos(0.3), math.sin(0.3)
    beside = torch.tensor([[50.0 - 10 * sin, 40.0 + 10 * cos, 30.0, 10.0, 0.3]])
    corner = torch.tensor([[50.0 + 30 * cos - 10 * sin, 40.0 + 30 * sin + 10 * cos, 30, 10, 0.3]])
    square = torch.tensor([[0.0, 0.0, 4.0, 4.0, 0.0]])
    square_beside = torch.tensor([[4.0, 0.0, 4.0, 4.0, 0.0], [4.0, 4.0, 4.0, 4.0, 0.0]])
    assert float(rotated_box_iou(box, beside)) == pytest.approx(0.0, abs=1e-5)
    assert float(rotated_box_iou(box, corner)) == pytest.approx(0.0, abs=1e-5)
    assert rotated_box_iou(square, square_beside).tolist() == [[0.0, 0.0]]
    far = torch.tensor([[500.0, 400.0, 30.0, 10.0, 0.3]])
    assert rotated_box_iou(box, far).tolist() == [[0.0]]


def test_iou_of_zero_area_and_invalid_boxes_is_zero() -> None:
    box = torch.tensor([[5.0, 5.0, 6.0, 4.0, 0.2]])
    odd = torch.tensor(
        [
            [5.0, 5.0, 0.0, 4.0, 0.2],
            [5.0, 5.0, 6.0, 0.0, 0.2],
            [5.0, 5.0, 0.0, 0.0, 0.0],
            [5.0, 5.0, -6.0, 4.0, 0.2],
            [math.nan, 5.0, 6.0, 4.0, 0.2],
            [5.0, 5.0, math.inf, 4.0, 0.2],
        ]
    )
    matrix = rotated_box_iou(odd, torch.cat((box, odd)))
    assert matrix.eq(0).all()
    aligned = rotated_box_iou_aligned(odd, box.expand_as(odd))
    assert aligned.eq(0).all()


def test_iou_at_the_ends_of_the_angle_range() -> None:
    below = math.nextafter(math.pi / 2, 0.0)
    boxes = torch.tensor(
        [[20.0, 20.0, 30.0, 8.0, ANGLE_MIN], [20.0, 20.0, 30.0, 8.0, below]], dtype=torch.float64
    )
    others = torch.tensor([[25.0, 18.0, 20.0, 10.0, 1.2], [20.0, 30.0, 16.0, 6.0, -1.5]])
    reference = shapely_iou(boxes, others.double())
    np.testing.assert_allclose(
        rotated_box_iou(boxes, others.double()).numpy(), reference, atol=1e-12
    )
    # -pi/2 and just below pi/2 are the same rectangle (up to the last bit)
    assert float(rotated_box_iou(boxes[:1], boxes[1:])) == pytest.approx(1.0, abs=1e-12)
    assert float(rotated_box_iou(boxes[:1].float(), boxes[1:].float())) == pytest.approx(
        1.0, abs=1e-5
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_iou_of_one_box_written_two_ways_is_one(dtype: torch.dtype) -> None:
    boxes = random_boxes(30, seed=7, dtype=dtype, extent=1000)
    swapped = boxes[:, [0, 1, 3, 2, 4]].clone()
    swapped[:, 4] += math.pi / 2
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(
        rotated_box_iou_aligned(boxes, swapped), torch.ones(30, dtype=dtype), atol=tolerance, rtol=0
    )
    matrix = rotated_box_iou(boxes, normalize_boxes(swapped))
    torch.testing.assert_close(
        matrix.diagonal(), torch.ones(30, dtype=dtype), atol=tolerance, rtol=0
    )


def test_iou_shapes_dtypes_and_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    boxes1, boxes2 = random_boxes(23, seed=8), random_boxes(17, seed=9)
    expected = rotated_box_iou(boxes1, boxes2)
    monkeypatch.setattr(iou_module, "_PAIR_CHUNK", 7)
    monkeypatch.setattr(iou_module, "_MASK_BLOCK", 40)
    torch.testing.assert_close(rotated_box_iou(boxes1, boxes2), expected)
    aligned = rotated_box_iou_aligned(boxes1[:17], boxes2)
    torch.testing.assert_close(aligned, expected[:17].diagonal())
    assert rotated_box_iou(boxes1.bfloat16(), boxes2.half()).dtype == torch.float32
    assert rotated_box_iou(boxes1.float(), boxes2).dtype == torch.float64
    assert rotated_box_iou(boxes1[:0], boxes2).shape == (0, 17)
    assert rotated_box_iou(boxes1, boxes2[:0]).shape == (23, 0)
    assert rotated_box_iou_aligned(boxes1[:0], boxes2[:0]).shape == (0,)
    with pytest.raises(ValueError, match="as many boxes"):
        rotated_box_iou_aligned(boxes1, boxes2)
    with pytest.raises(ValueError, match=r"\(N, 5\)"):
        rotated_box_iou(boxes1[:, :4], boxes2)


def test_aligned_iou_can_be_exported() -> None:
    class Overlap(torch.nn.Module):
        def forward(self, a: Tensor, b: Tensor) -> Tensor:
            return rotated_box_iou_aligned(a, b)

    boxes1, boxes2 = random_boxes(12, seed=10).float(), random_boxes(12, seed=11).float()
    program = torch.export.export(Overlap(), (boxes1, boxes2))
    torch.testing.assert_close(
        program.module()(boxes1, boxes2), rotated_box_iou_aligned(boxes1, boxes2)
    )


# --- NMS -----------------------------------------------------------------------------


def clustered_boxes(objects: int, per_object: int, *, seed: int) -> tuple[Tensor, Tensor]:
    """Detector-like boxes: jittered copies around each object, random scores."""
    generator = torch.Generator().manual_seed(seed)
    truth = random_boxes(objects, seed=seed, extent=200)
    copies = truth.repeat_interleave(per_object, dim=0)
    noise = torch.randn(copies.shape, generator=generator, dtype=torch.float64)
    copies[:, :2] += noise[:, :2] * copies[:, 2:3] * 0.15
    copies[:, 2:4] *= torch.exp(noise[:, 2:4] * 0.15)
    copies[:, 4] += noise[:, 4] * 0.2
    scores = torch.rand(copies.shape[0], generator=generator, dtype=torch.float64)
    return normalize_boxes(copies), scores


@pytest.mark.parametrize("threshold", [0.1, 0.5])
def test_nms_keeps_what_a_greedy_loop_over_shapely_polygons_keeps(threshold: float) -> None:
    boxes, scores = clustered_boxes(20, 8, seed=12)
    for dtype in (torch.float32, torch.float64):
        kept = rotated_nms(boxes.to(dtype), scores.to(dtype), threshold)
        assert kept.dtype == torch.int64
        assert kept.tolist() == shapely_nms(boxes.to(dtype), scores.to(dtype), threshold)
    assert 20 <= kept.numel() < 160
    assert bool((scores[kept].diff() <= 0).all())  # decreasing score order


def test_nms_in_small_bands_and_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    boxes, scores = clustered_boxes(20, 8, seed=16)
    labels = torch.arange(160) % 2
    expected = rotated_nms(boxes, scores, 0.3), batched_rotated_nms(boxes, scores, labels, 0.3)
    monkeypatch.setattr(nms_module, "_BAND_ROWS", 5)
    monkeypatch.setattr(nms_module, "_PAIR_CHUNK", 7)
    assert rotated_nms(boxes, scores, 0.3).tolist() == expected[0].tolist()
    assert batched_rotated_nms(boxes, scores, labels, 0.3).tolist() == expected[1].tolist()


def test_nms_suppression_is_strictly_above_the_threshold() -> None:
    boxes = torch.tensor([[0.0, 0, 4, 2, 0], [1.0, 0, 4, 2, 0], [0, 0, 4, 2, 0]])
    scores = torch.tensor([0.9, 0.8, 0.7])  # IoU of boxes 0 and 1 is 3/5
    assert rotated_nms(boxes, scores, 0.6).tolist() == [0, 1]
    assert rotated_nms(boxes, scores, 0.59).tolist() == [0]
    assert rotated_nms(boxes, scores, 1.0).tolist() == [0, 1, 2]


def test_batched_nms_never_suppresses_across_labels() -> None:
    boxes, scores = clustered_boxes(10, 6, seed=13)
    labels = torch.arange(60) % 3
    kept = batched_rotated_nms(boxes, scores, labels, 0.3)
    expected = torch.cat(
        [
            torch.nonzero(labels == k)[:, 0][
                rotated_nms(boxes[labels == k], scores[labels == k], 0.3)
            ]
            for k in range(3)
        ]
    )
    assert kept.tolist() == expected[scores[expected].argsort(descending=True)].tolist()
    twins = torch.tensor([[5.0, 5, 4, 2, 0.1], [5.0, 5, 4, 2, 0.1]])
    two_scores = torch.tensor([0.5, 0.6])
    assert batched_rotated_nms(twins, two_scores, torch.tensor([1, 2]), 0.5).tolist() == [1, 0]
    assert batched_rotated_nms(twins, two_scores, torch.tensor([1, 1]), 0.5).tolist() == [1]


def test_nms_of_empty_and_degenerate_inputs() -> None:
    empty = rotated_nms(torch.zeros(0, 5), torch.zeros(0), 0.5)
    assert empty.dtype == torch.int64
    assert empty.shape == (0,)
    empty = batched_rotated_nms(
        torch.zeros(0, 5), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5
    )
    assert empty.dtype == torch.int64
    assert empty.shape == (0,)
    flat = torch.tensor([[5.0, 5, 4, 0, 0], [5.0, 5, 4, 0, 0]])  # zero area: never overlaps
    assert rotated_nms(flat, torch.tensor([0.2, 0.3]), 0.5).tolist() == [1, 0]
    with pytest.raises(ValueError, match="scores"):
        rotated_nms(torch.zeros(2, 5), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match=r"iou_threshold must be in \[0, 1\]"):
        rotated_nms(torch.zeros(2, 5), torch.zeros(2), -0.1)


# --- Gaussian losses ------------------------------------------------------------------


def reference_losses(pred: Tensor, target: Tensor) -> dict[str, Tensor]:
    """The textbook formulas with 2x2 matrices (float64)."""
    mu1, s1 = box_to_gaussian(pred.double())
    mu2, s2 = box_to_gaussian(target.double())
    delta = (mu1 - mu2).unsqueeze(-1)
    mean = (s1 + s2) / 2
    bhattacharyya = (delta.mT @ torch.linalg.inv(mean) @ delta)[..., 0, 0] / 8 + 0.5 * torch.log(
        torch.linalg.det(mean) / torch.sqrt(torch.linalg.det(s1) * torch.linalg.det(s2))
    )
    inverse2 = torch.linalg.inv(s2)
    kl = 0.5 * (
        (inverse2 @ s1).diagonal(dim1=-2, dim2=-1).sum(-1)
        + (delta.mT @ inverse2 @ delta)[..., 0, 0]
        - 2
        + torch.log(torch.linalg.det(s2) / torch.linalg.det(s1))
    )

    def sqrtm(m: Tensor) -> Tensor:
        values, vectors = torch.linalg.eigh(m)
        return vectors @ torch.diag_embed(values.clamp(min=0).sqrt()) @ vectors.mT

    root1 = sqrtm(s1)
    cross = sqrtm(root1 @ s2 @ root1)
    wasserstein = delta.square().sum((-2, -1)) + (s1 + s2 - 2 * cross).diagonal(
        dim1=-2, dim2=-1
    ).sum(-1)
    return {
        "probiou": 1 - torch.sqrt(1 - torch.exp(-bhattacharyya)),
        "kld": 1 - 1 / (1 + torch.log1p(kl)),
        "gwd": 1 - 1 / (1 + torch.log1p(wasserstein)),
    }


def test_box_to_gaussian_is_the_rectangles_covariance() -> None:
    box = torch.tensor([[3.0, 4.0, 12.0, 6.0, 0.5]], dtype=torch.float64)
    mean, covariance = box_to_gaussian(box)
    torch.testing.assert_close(mean, box[:, :2])
    values, vectors = torch.linalg.eigh(covariance[0])
    torch.testing.assert_close(values, torch.tensor([3.0, 12.0], dtype=torch.float64))
    assert abs(
        float(vectors[:, 1] @ torch.tensor([math.cos(0.5), math.sin(0.5)]).double())
    ) == pytest.approx(1.0)


def test_gaussian_losses_match_the_matrix_formulas() -> None:
    pred = random_boxes(50, seed=14, extent=30)
    target = random_boxes(50, seed=15, extent=30)
    pred[:10, 2:4] = pred[:10, 2:4].flip(-1)  # not le90: the losses do not care
    expected = reference_losses(pred, target)
    torch.testing.assert_close(probiou(pred, target, eps=0.0), expected["probiou"])
    torch.testing.assert_close(kld_loss(pred, target), expected["kld"])
    torch.testing.assert_close(gwd_loss(pred, target), expected["gwd"])
    close = probiou_loss(pred, target) - (1 - expected["probiou"])
    assert float(close.abs().max()) < 1e-3  # eps moves the Hellinger distance slightly


@pytest.mark.parametrize("loss", LOSSES)
def test_gaussian_losses_vanish_for_one_box_written_several_ways(
    loss: Callable[[Tensor, Tensor], Tensor],
) -> None:
    boxes = torch.tensor(
        [
            [10.0, 20.0, 30.0, 8.0, 0.4],
            [10.0, 20.0, 30.0, 8.0, ANGLE_MIN],
            [1e-3, 2e-3, 4e-4, 1e-4, 1.0],  # tiny
            [1e6, 2e6, 4e5, 1e5, -1.0],  # huge
            [5.0, 5.0, 300.0, 1.0, 0.0],  # thin
            [5.0, 5.0, 12.0, 12.0, 0.7],  # square
        ],
        dtype=torch.float64,
    )
    plus_pi = boxes.clone()
    plus_pi[:, 4] += math.pi
    swapped = boxes[:, [0, 1, 3, 2, 4]].clone()
    swapped[:, 4] += math.pi / 2
    square_turned = boxes[5:].clone()
    square_turned[:, 4] += math.pi / 2
    for other, reference in (
        (boxes, boxes),
        (plus_pi, boxes),
        (swapped, boxes),
        (square_turned, boxes[5:]),
    ):
        for dtype in (torch.float32, torch.float64):
            value = loss(other.to(dtype), reference.to(dtype))
            assert value.shape == (reference.shape[0],)
            # gwd is in px^2: in float32 the huge box turned by pi moves by 0.02 px
            tolerance = 2e-4 if loss is gwd_loss and dtype == torch.float32 else 1e-5
            assert float(value.abs().max()) < tolerance


@pytest.mark.parametrize("loss", LOSSES)
def test_gaussian_losses_are_positive_with_finite_gradients(
    loss: Callable[[Tensor, Tensor], Tensor],
) -> None:
    target = torch.tensor(
        [
            [10.0, 20.0, 30.0, 8.0, 0.4],
            [1e-3, 2e-3, 4e-4, 1e-4, 1.0],
            [1e6, 2e6, 4e5, 1e5, -1.0],
            [5, 5, 300, 1, 1.5],
        ]
    )
    pred = target.clone().double()
    pred[:, 0] += target[:, 2] * 0.1
    pred[:, 3] *= 1.3
    pred[:, 4] -= 0.2
    for dtype in (torch.float32, torch.float64):
        leaf = pred.to(dtype, copy=True).requires_grad_()
        value = loss(leaf, target.to(dtype))
        assert bool(((value >= 0) & (value < 1)).all())
        if loss is not gwd_loss or dtype == torch.float64:  # gwd of 1e-3 px boxes: ~1e-8
            assert bool((value > 0).all())
        (grad,) = torch.autograd.grad(value.sum(), leaf)
        assert bool(torch.isfinite(grad).all())
        assert bool((grad[:, :2].abs().sum(-1) > 0).all())  # the centre is pulled


@pytest.mark.parametrize("loss", LOSSES)
def test_gaussian_losses_pass_gradcheck(loss: Callable[[Tensor, Tensor], Tensor]) -> None:
    target = torch.tensor(
        [[10.0, 20.0, 30.0, 8.0, 0.4], [0.0, 0.0, 5.0, 9.0, -1.4]], dtype=torch.float64
    )
    pred = torch.tensor(
        [[12.0, 19.0, 25.0, 10.0, 0.6], [1.0, -0.5, 4.0, 7.0, 1.5]], dtype=torch.float64
    )
    pred.requires_grad_()
    assert torch.autograd.gradcheck(lambda p: loss(p, target), (pred,))
    assert torch.autograd.gradcheck(
        lambda t: loss(pred.detach(), t), (target.clone().requires_grad_(),)
    )
