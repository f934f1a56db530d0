"""Image/pixel AUROC and PRO against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from visionatlas_anomaly.metrics import image_auroc, pixel_auroc, pro_score


def test_image_auroc_sanity() -> None:
    assert image_auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert image_auroc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert image_auroc([0.1, 0.6, 0.5, 0.9], [0, 0, 1, 1]) == 0.75
    with pytest.raises(ValueError, match="both normal and anomalous"):
        image_auroc([0.1, 0.2], [0, 0])


def test_pixel_auroc_perfect_and_random() -> None:
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[0, :2, :2] = True
    assert pixel_auroc(masks.astype(float), masks) == 1.0
    assert pixel_auroc(np.ones((2, 4, 4)), masks) == 0.5


def test_pro_perfect_map_is_one() -> None:
    masks = np.zeros((1, 8, 8), dtype=bool)
    masks[0, 1:3, 1:3] = True
    masks[0, 5:8, 5:8] = True
    assert pro_score(masks.astype(float), masks) == pytest.approx(1.0)


def test_pro_hand_computed() -> None:
    # One image 1 x 10: regions A = pixels 0-1, B = pixel 9; normal pixels 2-8 (7 pixels).
    masks = np.zeros((1, 1, 10), dtype=bool)
    masks[0, 0, [0, 1, 9]] = True
    maps = np.zeros((1, 1, 10))
    maps[0, 0, 0] = 10.0  # half of A scores above every normal pixel
    maps[0, 0, 1] = 0.0
    maps[0, 0, 9] = 10.0  # all of B
    maps[0, 0, 2:9] = np.arange(1, 8)  # normal scores 1..7, one per FPR step of 1/7
    # At FPR 0 the PRO is (1/2 + 1) / 2 = 0.75 and stays there until FPR 1, where the
    # last pixel of A (score 0) joins: area up to 0.3 = 0.75 * 0.3, normalized 0.75.
    assert pro_score(maps, masks) == pytest.approx(0.75, abs=1e-9)
    # Region-averaged, not pixel-averaged: pixel overlap would be 2/3.


def test_pro_counts_regions_per_image_and_integrates() -> None:
    # Two images, one region each; scores make the second region detected only at FPR 0.5.
    masks = np.zeros((2, 1, 4), dtype=bool)
    masks[0, 0, 0] = True
    masks[1, 0, 0] = True
    maps = np.zeros((2, 1, 4))
    maps[0, 0] = [9.0, 1.0, 2.0, 3.0]
    maps[1, 0] = [2.5, 4.0, 5.0, 6.0]  # normal pixels 1..6 (6 pixels); region 2 at 2.5
    # thresholds: FPR 0 -> PRO 0.5 (region 1 only), region 2 needs t < 2.5 -> FPR 4/6.
    assert pro_score(maps, masks, fpr_limit=0.5) == pytest.approx(0.5)
    # Over the whole range: PRO 0.5 up to FPR 4/6 (scores 6, 5, 4, 3), then 1.
    assert pro_score(maps, masks, fpr_limit=1.0) == pytest.approx(0.5 * 4 / 6 + 2 / 6)
