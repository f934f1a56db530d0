"""The losses against values computed by hand on tiny tensors."""

from __future__ import annotations

import pytest
import torch

from visionatlas_anomaly.losses import (
    compactness_loss,
    distillation_loss,
    student_regression_loss,
    triplet_loss,
)


def test_distillation_loss() -> None:
    decoded = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    target = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    # (1 + 4 + 9 + 16) / 2
    assert distillation_loss(decoded, target).item() == pytest.approx(15.0)


def test_triplet_loss_with_anchor_swap() -> None:
    anchor = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    positive = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    negative = torch.tensor([[2.0, 0.0], [3.0, 0.0]])
    # sample 1: d+ = 1, d- = min(4, 1) = 1 -> max(0, 0.5 + 1 - 1) = 0.5
    # sample 2: d+ = 0, d- = min(9, 9) = 9 -> max(0, 0.5 - 9) = 0
    assert triplet_loss(anchor, positive, negative, margin=0.5).item() == pytest.approx(0.25)


def test_compactness_loss() -> None:
    x = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, -1.0], [3.0, 6.0, 1.0], [4.0, 8.0, -1.0]])
    # corr(x0, x1) = 1; corr(x0, x2) = corr(x1, x2) = -1/sqrt(5)
    expected = (2 * 1.0 + 4 * (1 / 5)) / 6
    assert compactness_loss(x).item() == pytest.approx(expected, rel=1e-4)
    uncorrelated = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert compactness_loss(uncorrelated).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="N >= 2"):
        compactness_loss(torch.ones(1, 4))


def test_student_regression_loss() -> None:
    prediction = torch.zeros(1, 2, 1, 2)
    target = torch.tensor([[[[1.0, 0.0]], [[2.0, 3.0]]]])
    # positions: (1^2 + 2^2) = 5 and (0 + 3^2) = 9 -> mean 7
    assert student_regression_loss(prediction, target).item() == pytest.approx(7.0)
    with pytest.raises(ValueError, match="same shape"):
        student_regression_loss(prediction, target[:, :1])
