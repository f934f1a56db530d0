"""Rotated-box operations of the oriented plugin: NMS against shapely, and the IoU matrix.

    uv run python benchmarks/oriented_ops.py                 # both
    uv run python benchmarks/oriented_ops.py nms --repeats 5
    uv run python benchmarks/oriented_ops.py --check         # exit 1 when a target is missed

``nms``: :func:`~visionatlas_oriented.nms.rotated_nms` over 2,000 detector-like boxes (10
jittered predictions around each of 200 objects in a 1024x1024 image, sides 8-128 px, any
angle, random scores, IoU threshold 0.5) against greedy NMS over shapely polygons (sort by
score; for each box still standing, keep it and drop the later ones whose polygon IoU is
above the threshold, one shapely vectorised call per kept box). The kept sets are checked
equal first; the figure is the median of the per-pair speed-ups (shapely time / ours).
Target: at least 50x. For scale, the textbook loop (shapely, one polygon pair at a time) is
also timed once.

``iou``: :func:`~visionatlas_oriented.iou.rotated_box_iou` of 1,000 x 1,000 boxes, for a
scene (centres anywhere in 1024x1024, sides 8-128 px) and for a dense case where every pair
overlaps (centres within 2 px of one point). The figure is the median time. Target: under
1 s each.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from _timing import alternate

NMS_SPEEDUP = 50.0
IOU_SECONDS = 1.0


def _scene(objects: int, per_object: int, *, seed: int) -> tuple[Any, Any]:
    import torch

    from visionatlas_oriented.boxes import normalize_boxes

    generator = torch.Generator().manual_seed(seed)
    truth = torch.empty(objects, 5)
    truth[:, :2] = torch.rand(objects, 2, generator=generator) * 1024
    truth[:, 2:4] = torch.rand(objects, 2, generator=generator) * 120 + 8
    truth[:, 4] = (torch.rand(objects, generator=generator) - 0.5) * math.pi
    boxes = truth.repeat_interleave(per_object, dim=0)
    noise = torch.randn(boxes.shape, generator=generator)
    size = boxes[:, 2:4].mean(dim=1, keepdim=True)
    boxes[:, :2] += noise[:, :2] * size * 0.1
    boxes[:, 2:4] *= torch.exp(noise[:, 2:4] * 0.1)
    boxes[:, 4] += noise[:, 4] * 0.1
    scores = torch.rand(boxes.shape[0], generator=generator)
    return normalize_boxes(boxes), scores


def _shapely_nms(boxes: Any, scores: Any, threshold: float) -> list[int]:
    """Greedy NMS over shapely polygons (one vectorised IoU call per kept box)."""
    import numpy as np
    import shapely  # type: ignore[import-untyped]

    from visionatlas_oriented.boxes import boxes_to_corners

    polygons = shapely.polygons(boxes_to_corners(boxes.double()).numpy())
    areas = shapely.area(polygons)
    order = np.argsort(-scores.numpy(), kind="stable")
    alive = np.ones(len(order), dtype=bool)
    kept = []
    for position, index in enumerate(order):
        if not alive[position]:
            continue
        kept.append(int(index))
        later = position + 1 + np.flatnonzero(alive[position + 1 :])
        others = order[later]
        inter = shapely.area(shapely.intersection(polygons[index], polygons[others]))
        overlap = inter / (areas[index] + areas[others] - inter)
        alive[later[overlap > threshold]] = False
    return kept


def _shapely_nms_pairwise(boxes: Any, scores: Any, threshold: float) -> list[int]:
    """The textbook greedy NMS over shapely polygons: one polygon pair at a time."""
    import numpy as np
    import shapely

    from visionatlas_oriented.boxes import boxes_to_corners

    polygons = list(shapely.polygons(boxes_to_corners(boxes.double()).numpy()))
    order = np.argsort(-scores.numpy(), kind="stable").tolist()
    suppressed = set()
    kept = []
    for position, i in enumerate(order):
        if i in suppressed:
            continue
        kept.append(i)
        for j in order[position + 1 :]:
            if j not in suppressed:
                inter = polygons[i].intersection(polygons[j]).area
                if inter / (polygons[i].area + polygons[j].area - inter) > threshold:
                    suppressed.add(j)
    return kept


def bench_nms(repeats: int) -> tuple[str, bool]:
    from visionatlas_oriented.nms import rotated_nms

    boxes, scores = _scene(200, 10, seed=0)
    threshold = 0.5
    ours = rotated_nms(boxes, scores, threshold).tolist()
    reference = _shapely_nms(boxes, scores, threshold)
    if ours != reference:
        raise SystemExit(f"kept sets differ: {len(ours)} boxes vs shapely's {len(reference)}")
    ours_s, reference_s, ratio = alternate(
        lambda: rotated_nms(boxes, scores, threshold),
        lambda: _shapely_nms(boxes, scores, threshold),
        repeats,
    )
    speedup = 1 / ratio
    passed = speedup >= NMS_SPEEDUP
    start = time.perf_counter()
    if _shapely_nms_pairwise(boxes, scores, threshold) != ours:
        raise SystemExit("kept sets differ from the pairwise shapely loop's")
    pairwise_s = time.perf_counter() - start
    row = (
        f"{'rotated_nms, 2000 boxes (' + str(len(ours)) + ' kept)':<44} ours "
        f"{ours_s * 1e3:8.1f} ms  shapely {reference_s * 1e3:8.1f} ms  speed-up "
        f"{speedup:6.1f}x  target >= {NMS_SPEEDUP:g}x {'ok' if passed else 'MISSED'}\n"
        f"{'  (shapely one pair at a time, once)':<44} {pairwise_s * 1e3:8.1f} ms  speed-up "
        f"{pairwise_s / ours_s:6.1f}x"
    )
    return row, passed


def _iou_case(dense: bool) -> Callable[[int], tuple[str, bool]]:
    def bench(repeats: int) -> tuple[str, bool]:
        import torch

        from visionatlas_oriented.iou import rotated_box_iou

        generator = torch.Generator().manual_seed(1)
        boxes = torch.empty(1000, 5)
        spread = 4.0 if dense else 1024.0
        offset = 512 - spread / 2 if dense else 0.0
        boxes[:, :2] = torch.rand(1000, 2, generator=generator) * spread + offset
        boxes[:, 2:4] = torch.rand(1000, 2, generator=generator) * 120 + 8
        boxes[:, 4] = (torch.rand(1000, generator=generator) - 0.5) * math.pi
        others = boxes.roll(1, dims=0)
        overlapping = float((rotated_box_iou(boxes, others) > 0).float().mean())
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            rotated_box_iou(boxes, others)
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        passed = seconds < IOU_SECONDS
        name = f"rotated_box_iou 1000x1000, {'dense' if dense else 'scene'}"
        row = (
            f"{name + f' ({overlapping:.1%} overlap)':<44} ours {seconds * 1e3:8.1f} ms"
            f"{'':<41}target < {IOU_SECONDS:g} s {'ok' if passed else 'MISSED'}"
        )
        return row, passed

    return bench


def bench_iou(repeats: int) -> tuple[str, bool]:
    rows, passed = zip(*(_iou_case(dense)(repeats) for dense in (False, True)), strict=True)
    return "\n".join(rows), all(passed)


BENCHMARKS: dict[str, Callable[[int], tuple[str, bool]]] = {"nms": bench_nms, "iou": bench_iou}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("only", nargs="*", help=f"subset to run: {', '.join(BENCHMARKS)}")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args()
    unknown = [name for name in args.only if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    results = []
    for name in args.only or BENCHMARKS:
        row, passed = BENCHMARKS[name](args.repeats)
        print(row, flush=True)
        results.append(passed)
    return 0 if all(results) or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
