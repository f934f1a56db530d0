"""Precise batch norm: running statistics recomputed from training batches before validation."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from visionatlas_train.precise_bn import PreciseBatchNorm


class _Net(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.BatchNorm1d(3, momentum=0.01), nn.Linear(3, 1))
        self.seen_means: list[Tensor] = []

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        inputs, targets = batch
        return nn.functional.mse_loss(self.model(inputs), targets)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.seen_means.append(self.model[0].running_mean.clone())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)  # weights stay: stats are exact


def _fit(callbacks: list[pl.Callback]) -> tuple[_Net, Tensor, Tensor]:
    torch.manual_seed(0)
    inputs = torch.randn(40, 3) * torch.tensor([1.0, 2.0, 3.0]) + torch.tensor([5.0, -2.0, 0.5])
    data = TensorDataset(inputs, torch.randn(40, 1))
    net = _Net()
    trainer = pl.Trainer(
        max_epochs=1, callbacks=callbacks, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(net, DataLoader(data, batch_size=10), DataLoader(data, batch_size=10))
    return net, inputs, torch.random.get_rng_state()


def test_statistics_are_the_average_of_the_first_batches_before_validation() -> None:
    net, inputs, _ = _fit([PreciseBatchNorm(2)])
    expected = torch.stack([inputs[:10].mean(0), inputs[10:20].mean(0)]).mean(0)
    assert torch.allclose(net.seen_means[0], expected, atol=1e-5)
    assert net.model[0].momentum == 0.01  # restored
    plain, _, _ = _fit([])
    # without it, the running mean has moved only 1 % per step from zero
    assert float(plain.seen_means[0].abs().max()) < 0.5


def test_global_random_state_is_untouched() -> None:
    _, _, with_callback = _fit([PreciseBatchNorm(3)])
    _, _, without = _fit([])
    assert torch.equal(with_callback, without)


def test_batches_must_be_positive() -> None:
    with pytest.raises(ValueError, match="batches >= 1"):
        PreciseBatchNorm(0)
