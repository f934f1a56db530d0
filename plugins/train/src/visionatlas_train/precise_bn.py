"""Precise batch-norm statistics: recompute the running statistics before each validation.

Batch norm evaluates with running averages of the batch statistics. With a small momentum
(torchvision's MobileNets and EfficientNets use 0.01: an average over about 100 steps)
and a short run, those averages still remember the random initial weights when the model
is evaluated, and eval-mode outputs collapse although training accuracy is high. This
callback recomputes them as plain averages over ``batches`` training batches with the
current weights, right before every validation (so the validated and checkpointed model
use the same statistics); the technique is "precise BN" (Wu and Johnson, "Rethinking
'Batch' in BatchNorm", 2021; pycls and detectron2 ship it). Global random state is left
untouched, so a resumed run stays identical to one that never stopped. Under DDP the
statistics are averaged over the processes.
"""

from __future__ import annotations

import itertools
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["PreciseBatchNorm", "batch_norms"]


def batch_norms(model: nn.Module) -> list[_BatchNorm]:
    """The batch-norm layers of ``model`` that keep running statistics."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


class PreciseBatchNorm(pl.Callback):
    """Recompute batch-norm running statistics on ``batches`` training batches before
    each validation (not before the sanity check)."""

    def __init__(self, batches: int) -> None:
        if batches < 1:
            raise ValueError(f"precise batch norm needs batches >= 1, got {batches}")
        self.batches = batches

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        model = getattr(pl_module, "model", pl_module)
        norms = batch_norms(model)
        loader = trainer.train_dataloader
        if not norms or loader is None:
            return
        devices = [pl_module.device] if pl_module.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            _recompute(trainer, pl_module, model, norms, loader, self.batches)


def _recompute(
    trainer: pl.Trainer,
    pl_module: pl.LightningModule,
    model: nn.Module,
    norms: list[_BatchNorm],
    loader: Any,
    batches: int,
) -> None:
    momenta = [norm.momentum for norm in norms]
    counts = [
        None if norm.num_batches_tracked is None else norm.num_batches_tracked.clone()
        for norm in norms
    ]
    was_training = model.training
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches below
    model.train()
    try:
        seen = 0
        for batch in itertools.islice(loader, batches):
            inputs, targets = trainer.strategy.batch_to_device(batch, pl_module.device)
            with trainer.precision_plugin.forward_context():
                if getattr(pl_module, "takes_targets", False):  # detectors need targets
                    model(inputs, targets)
                else:
                    model(inputs)
            seen += 1
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        model.train(was_training)
    if seen == 0:
        return
    for norm, count in zip(norms, counts, strict=True):
        if norm.num_batches_tracked is not None and count is not None:
            norm.num_batches_tracked.copy_(count + seen)
        if trainer.world_size > 1:
            for name in ("running_mean", "running_var"):
                buffer = getattr(norm, name)
                buffer.copy_(trainer.strategy.reduce(buffer.clone(), reduce_op="mean"))
