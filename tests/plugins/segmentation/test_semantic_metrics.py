"""Mean IoU, pixel accuracy and per-class IoU against a case computed by hand."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from visionatlas_segmentation.metrics import semantic_metrics


def test_metrics_match_a_hand_computed_case() -> None:
    # targets (255 ignored) and predictions over 8 pixels of 3 classes:
    #   target 0 0 0 1 1 2 2 255
    #   pred   0 0 1 1 1 2 0 2
    target = torch.tensor([[[0, 0, 0, 1, 1, 2, 2, 255]]])
    pred = torch.tensor([[[0, 0, 1, 1, 1, 2, 0, 2]]])
    logits = F.one_hot(pred, 3).permute(0, 3, 1, 2).float()
    metrics = semantic_metrics(["bg", "a", "b"])
    metrics.update(logits, target)
    values = {k: float(v) for k, v in metrics.compute().items()}
    # class 0: intersection 2, union 3 + 1 (pred 0 on a class-2 pixel) = 4 -> 0.5
    # class 1: intersection 2, union 3 -> 2/3; class 2: intersection 1, union 2 -> 0.5
    assert values["iou_bg"] == pytest.approx(2 / 4)
    assert values["iou_a"] == pytest.approx(2 / 3)
    assert values["iou_b"] == pytest.approx(1 / 2)
    assert values["miou"] == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)
    assert values["pixel_acc"] == pytest.approx(5 / 7)  # the ignored pixel counts nowhere
