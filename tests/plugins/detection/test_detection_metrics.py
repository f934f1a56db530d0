"""COCO mAP through pycocotools against cases computed by hand."""

from __future__ import annotations

import pytest
import torch

from visionatlas_detection.metrics import DetectionMeanAP


def _mask(box: tuple[int, int, int, int], size: int = 64) -> torch.Tensor:
    grid = torch.zeros(size, size, dtype=torch.uint8)
    x0, y0, x1, y1 = box
    grid[y0:y1, x0:x1] = 1
    return grid


def test_one_hit_one_false_positive_one_miss() -> None:
    # Ranked detections: a hit (precision 1 at recall 0.5), then a false positive. COCO's
    # 101-point interpolation gives precision 1 for the 51 recall points 0.00..0.50 and 0
    # above: AP = 51/101 at every IoU threshold (the hit is exact).
    metric = DetectionMeanAP(masks=True)
    boxes = [(0, 0, 10, 10), (20, 20, 30, 30)]
    truth = [(0, 0, 10, 10), (40, 40, 60, 60)]
    metric.update(
        [{
            "boxes": torch.tensor(boxes, dtype=torch.float32),
            "scores": torch.tensor([0.9, 0.8]),
            "labels": torch.tensor([1, 1]),
            "masks": torch.stack([_mask(b) for b in boxes]).float()[:, None],  # probabilities
        }],
        [{
            "boxes": torch.tensor(truth, dtype=torch.float32),
            "labels": torch.tensor([1, 1]),
            "masks": torch.stack([_mask(b) for b in truth]),
        }],
    )  # fmt: skip
    result = metric.compute()
    for kind in ("bbox", "segm"):
        for key in ("map", "map_50", "map_75", "map_small"):
            assert float(result[f"{kind}_{key}"]) == pytest.approx(51 / 101, abs=1e-6)
        assert float(result[f"{kind}_mar_100"]) == pytest.approx(0.5)
        assert float(result[f"{kind}_map_large"]) == -1  # no large object: undefined


def test_iou_thresholds_of_a_loose_box() -> None:
    # IoU 62/100 = 0.62: a hit at the thresholds 0.50, 0.55 and 0.60 only, 3 of the 10.
    metric = DetectionMeanAP()
    metric.update(
        [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 6.2]]), "scores": torch.tensor([0.7]),
          "labels": torch.tensor([2])}],
        [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([2])}],
    )  # fmt: skip
    result = metric.compute()
    assert float(result["map_50"]) == pytest.approx(1.0)
    assert float(result["map_75"]) == pytest.approx(0.0)
    assert float(result["map"]) == pytest.approx(0.3)


def test_a_crowd_region_is_ignored_not_missed() -> None:
    metric = DetectionMeanAP()
    metric.update(
        [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "scores": torch.tensor([0.9]),
          "labels": torch.tensor([1])}],
        [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [30.0, 30.0, 60.0, 60.0]]),
          "labels": torch.tensor([1, 1]), "iscrowd": torch.tensor([0, 1])}],
    )  # fmt: skip
    assert float(metric.compute()["map_50"]) == pytest.approx(1.0)
