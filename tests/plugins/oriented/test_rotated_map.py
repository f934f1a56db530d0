"""Rotated mAP (DOTA task 1) against cases worked out by hand."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from visionatlas_oriented.metrics import (
    RotatedMeanAP,
    average_precision,
    rotated_average_precisions,
)

CLASSES = ["plane", "ship"]  # labels 1 and 2; 0 is the background
PLANE, SHIP = 1, 2

# Ground truth. Image A: two planes (the second difficult) and a ship; image B: a plane
# and a ship.
G1 = (20.0, 20.0, 20.0, 10.0, 0.0)
G2 = (60.0, 20.0, 20.0, 10.0, 0.0)  # difficult
S1 = (40.0, 60.0, 30.0, 10.0, 0.3)
G3 = (30.0, 30.0, 24.0, 12.0, -0.7)
S2 = (70.0, 70.0, 30.0, 10.0, 1.0)


def _boxes(*boxes: tuple[float, ...]) -> torch.Tensor:
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 5)


def _targets() -> list[dict[str, torch.Tensor]]:
    return [
        {"boxes": _boxes(G1, G2, S1), "labels": torch.tensor([PLANE, PLANE, SHIP]),
         "difficult": torch.tensor([False, True, False])},
        {"boxes": _boxes(G3, S2), "labels": torch.tensor([PLANE, SHIP])},
    ]  # fmt: skip


def _preds() -> list[dict[str, torch.Tensor]]:
    # Planes, by score:
    #   0.9 A  G1 exactly                       -> TP             tp 1 fp 0: R .5, P 1
    #   0.8 A  G1 moved 1 px (IoU 190/210=.90)  -> FP, duplicate  tp 1 fp 1: R .5, P .5
    #   0.7 A  G2 exactly, G2 difficult         -> neither        tp 1 fp 1: R .5, P .5
    #   0.6 B  on the ship S2 (another class)   -> FP             tp 1 fp 2: R .5, P 1/3
    #   0.5 B  G3 as (w, h) swapped, angle + pi/2: the same rectangle -> TP
    #                                                             tp 2 fp 2: R 1, P .5
    # Ships, by score:
    #   0.95 B S2 exactly                       -> TP             R .5, P 1
    #   0.4  A S1 turned a quarter: a cross, IoU 100/500 = 0.2 -> FP      R .5, P .5
    g3_swapped = (G3[0], G3[1], G3[3], G3[2], G3[4] + math.pi / 2)
    s1_turned = (*S1[:4], S1[4] + math.pi / 2)
    return [
        {"boxes": _boxes(G1, (21.0, *G1[1:]), G2, s1_turned),
         "scores": torch.tensor([0.9, 0.8, 0.7, 0.4]),
         "labels": torch.tensor([PLANE, PLANE, PLANE, SHIP])},
        {"boxes": _boxes(S2, g3_swapped, S2), "scores": torch.tensor([0.6, 0.5, 0.95]),
         "labels": torch.tensor([PLANE, PLANE, SHIP])},
    ]  # fmt: skip


# 11-point AP (recall 0, 0.1, ..., 1: the best precision at that recall or beyond):
#   plane: recall 0 .. 0.5 (6 points) precision 1; 0.6 .. 1 (5 points) precision 0.5
#          -> (6 * 1 + 5 * 0.5) / 11 = 8.5 / 11
#   ship:  recall 0 .. 0.5 precision 1, never beyond 0.5 -> 6 / 11
# All-point AP (area under the precision made non-increasing from the right):
#   plane: recall 0 -> .5 at precision 1, .5 -> 1 at .5 -> 0.5 + 0.25 = 0.75
#   ship:  recall 0 -> .5 at precision 1, nothing beyond -> 0.5
PLANE_07, SHIP_07 = 8.5 / 11, 6 / 11
PLANE_ALL, SHIP_ALL = 0.75, 0.5


def test_hand_computed_case_11_point() -> None:
    aps = rotated_average_precisions(_preds(), _targets(), num_classes=3)
    assert aps.keys() == {PLANE, SHIP}  # the background has no ground truth: left out
    assert aps[PLANE] == pytest.approx(PLANE_07)
    assert aps[SHIP] == pytest.approx(SHIP_07)


def test_hand_computed_case_all_points() -> None:
    aps = rotated_average_precisions(_preds(), _targets(), num_classes=3, use_07_metric=False)
    assert aps[PLANE] == pytest.approx(PLANE_ALL)
    assert aps[SHIP] == pytest.approx(SHIP_ALL)


@pytest.mark.parametrize(
    ("use_07_metric", "plane", "ship"),
    [(True, PLANE_07, SHIP_07), (False, PLANE_ALL, SHIP_ALL)],
)
@pytest.mark.parametrize("names", [CLASSES, ["__background__", *CLASSES]])
def test_metric_over_two_updates(
    names: list[str], use_07_metric: bool, plane: float, ship: float
) -> None:
    metric = RotatedMeanAP(names, use_07_metric=use_07_metric)
    preds, targets = _preds(), _targets()
    metric.update(preds[:1], targets[:1])  # one image per update: the same result
    metric.update(preds[1:], targets[1:])
    result = metric.compute()
    assert set(result) == {"map_50", "ap_50_plane", "ap_50_ship"}
    assert float(result["ap_50_plane"]) == pytest.approx(plane)
    assert float(result["ap_50_ship"]) == pytest.approx(ship)
    assert float(result["map_50"]) == pytest.approx((plane + ship) / 2)
    metric.reset()
    metric.update([], [])
    assert float(metric.compute()["map_50"]) == -1  # no ground truth: undefined


def _perfect() -> list[dict[str, torch.Tensor]]:
    return [
        {"boxes": t["boxes"], "scores": torch.linspace(0.9, 0.5, len(t["labels"])),
         "labels": t["labels"]}
        for t in _targets()
    ]  # fmt: skip


@pytest.mark.parametrize("use_07_metric", [True, False])
def test_perfect_predictions_give_one(use_07_metric: bool) -> None:
    metric = RotatedMeanAP(CLASSES, use_07_metric=use_07_metric)
    metric.update(_perfect(), _targets())
    result = metric.compute()
    assert float(result["map_50"]) == pytest.approx(1.0)
    assert float(result["ap_50_plane"]) == pytest.approx(1.0)


def test_no_predictions_give_zero() -> None:
    metric = RotatedMeanAP(CLASSES)
    empty = {"boxes": torch.zeros(0, 5), "scores": torch.zeros(0), "labels": torch.zeros(0)}
    metric.update([empty, empty], _targets())
    result = metric.compute()
    assert float(result["map_50"]) == 0.0
    assert float(result["ap_50_ship"]) == 0.0


def test_class_without_ground_truth_is_left_out_of_the_mean() -> None:
    metric = RotatedMeanAP([*CLASSES, "car"])
    metric.update(_perfect(), _targets())
    result = metric.compute()
    assert float(result["ap_50_car"]) == -1
    assert float(result["map_50"]) == pytest.approx(1.0)


def test_only_the_best_overlap_counts_as_in_the_devkit() -> None:
    # Two ground truths 2 px apart (IoU 18/22 = .82). The first detection takes the left
    # one; the second lies on the left one too (its best overlap), so it is a duplicate,
    # a false positive, even though it overlaps the unmatched right one by .82.
    left, right = (20.0, 20.0, 20.0, 10.0, 0.0), (22.0, 20.0, 20.0, 10.0, 0.0)
    targets = [{"boxes": _boxes(left, right), "labels": torch.tensor([1, 1])}]
    preds = [{"boxes": _boxes(left, left), "scores": torch.tensor([0.9, 0.8]),
              "labels": torch.tensor([1, 1])}]  # fmt: skip
    # Ranks: TP (R .5, P 1), FP (R .5, P .5): 11-point AP 6/11.
    assert rotated_average_precisions(preds, targets, num_classes=2)[1] == pytest.approx(6 / 11)


def test_a_detection_below_the_threshold_is_a_false_positive() -> None:
    truth = (20.0, 20.0, 20.0, 10.0, 0.0)
    loose = (26.0, 20.0, 20.0, 10.0, 0.0)  # IoU 14/26 = .54: a hit at 0.5, not at 0.6
    targets = [{"boxes": _boxes(truth), "labels": torch.tensor([1])}]
    preds = [{"boxes": _boxes(loose), "scores": torch.tensor([0.5]), "labels": torch.tensor([1])}]
    assert rotated_average_precisions(preds, targets, num_classes=2)[1] == pytest.approx(1.0)
    at_60 = rotated_average_precisions(preds, targets, num_classes=2, iou_threshold=0.6)
    assert at_60[1] == 0.0
    metric = RotatedMeanAP(CLASSES, iou_threshold=0.6)
    metric.update(preds, targets)
    assert float(metric.compute()["map_60"]) == 0.0


def test_average_precision_11_point_and_all_point() -> None:
    # Recall 0.3 at precision 1, then 0.6 at 0.5. 11-point: 0 .. 0.3 (4 points) at 1,
    # 0.4 .. 0.6 (3 points) at 0.5 -> 5.5 / 11. All-point: 0.3 * 1 + 0.3 * 0.5 = 0.45.
    recall, precision = np.array([0.3, 0.3, 0.6]), np.array([1.0, 0.5, 0.5])
    assert average_precision(recall, precision) == pytest.approx(5.5 / 11)
    assert average_precision(recall, precision, use_07_metric=False) == pytest.approx(0.45)
    empty = np.zeros(0)
    assert average_precision(empty, empty) == 0.0
    assert average_precision(empty, empty, use_07_metric=False) == 0.0


def test_exact_tenths_of_recall_reach_their_point() -> None:
    # 3 of 10 found: recall 0.3 exactly reaches the 0.3 point (the devkit's arange does not).
    recall = np.arange(1, 4) / 10
    assert average_precision(recall, np.ones(3)) == pytest.approx(4 / 11)


def test_bad_inputs_are_refused() -> None:
    targets: list[dict[str, Any]] = [{"boxes": _boxes(G1), "labels": torch.tensor([5])}]
    preds: list[dict[str, Any]] = [{"boxes": _boxes(), "scores": torch.zeros(0),
                                    "labels": torch.zeros(0)}]  # fmt: skip
    with pytest.raises(ValueError, match="label 5 is not a class label"):
        rotated_average_precisions(preds, targets, num_classes=3)
    with pytest.raises(ValueError, match="1 predictions for 0 targets"):
        RotatedMeanAP(CLASSES).update(preds, [])
    with pytest.raises(ValueError, match="one value per rank"):
        average_precision(np.zeros(2), np.zeros(3))
