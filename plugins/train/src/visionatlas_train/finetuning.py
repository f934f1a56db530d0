"""Two-phase fine-tuning: a linear probe with the backbone frozen, then the whole model.

The learning rates of the two phases are the schedule's job (see
:func:`visionatlas_train.optim.build_scheduler`); this callback freezes and unfreezes
the backbone with the model's own ``freeze_backbone()`` and ``unfreeze_backbone()``.

With one process, frozen parameters stop requiring gradients (no backward through the
backbone). Under DDP a parameter that does not require gradients when the model is
wrapped is never synchronised, even once unfrozen, so there the backbone keeps requiring
gradients and its gradients are dropped before every optimizer step of the probe: the
same updates, at the cost of a full backward pass.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BaseFinetuning
from torch import nn
from torch.optim import Optimizer

__all__ = ["TwoPhaseFinetuning", "backbone_parameters"]

log = logging.getLogger(__name__)


def _model(pl_module: pl.LightningModule) -> nn.Module:
    model = getattr(pl_module, "model", None)
    if not isinstance(model, nn.Module):
        raise TypeError("two-phase fine-tuning needs a LightningModule with a `model`")
    for method in ("freeze_backbone", "unfreeze_backbone"):
        if not callable(getattr(model, method, None)):
            info = getattr(model, "visionatlas_info", None)
            name = f"{info.task}/{info.architecture}" if info else type(model).__name__
            raise ValueError(
                f"{name} has no {method}() method, so its backbone cannot be frozen for a "
                "probing phase; set probe_epochs to 0"
            )
    return model


def backbone_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters ``model.freeze_backbone()`` freezes (found by freezing, then restored)."""
    trainable = {id(p): p.requires_grad for p in model.parameters()}
    model.freeze_backbone()  # type: ignore[operator]
    frozen = [p for p in model.parameters() if trainable[id(p)] and not p.requires_grad]
    for p in model.parameters():
        p.requires_grad_(trainable[id(p)])
    return frozen


class TwoPhaseFinetuning(BaseFinetuning):
    """Backbone frozen for the first ``probe_epochs`` epochs, trainable afterwards."""

    def __init__(self, probe_epochs: int) -> None:
        super().__init__()
        if probe_epochs < 1:
            raise ValueError(f"probe_epochs must be at least 1, got {probe_epochs}")
        self.probe_epochs = probe_epochs
        self.drop_gradients = False
        self.frozen = False
        self._backbone: list[nn.Parameter] = []

    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        model = _model(pl_module)
        self._backbone = backbone_parameters(model)
        if not self._backbone:
            raise ValueError("freeze_backbone() froze no parameter: there is nothing to probe")
        self.drop_gradients = pl_module.trainer.world_size > 1
        if not self.drop_gradients:
            model.freeze_backbone()  # type: ignore[operator]
        self.frozen = True

    def finetune_function(
        self, pl_module: pl.LightningModule, epoch: int, optimizer: Optimizer
    ) -> None:
        if self.frozen and epoch >= self.probe_epochs:
            if not self.drop_gradients:
                for parameter in self._backbone:
                    parameter.requires_grad_(True)
            self.frozen = False
            log.info("epoch %d: backbone unfrozen, the whole model trains", epoch + 1)

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Optimizer
    ) -> None:
        if self.frozen and self.drop_gradients:
            for parameter in self._backbone:
                parameter.grad = None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "probe_epochs": self.probe_epochs}
