"""The one generic LightningModule: a catalog model plus a task's training pieces.

Nothing here knows a task: the loss, the metrics, the batch transform (mixup, cutmix) and
the target handling all come from the task's
:class:`~visionatlas.training.protocol.TaskTraining` (CONVENTIONS 17). Metrics are the task's
``torchmetrics.MetricCollection``, cloned per stage with a ``train/``, ``val/`` or
``test/`` prefix, so reduction across processes and resets are torchmetrics' job
(CONVENTIONS 18).
"""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from visionatlas.training.protocol import LossOptions, TaskTraining, TrainingData
from visionatlas_train.checkpoint_io import EXTRA_KEY
from visionatlas_train.config import TrainConfig
from visionatlas_train.optim import build_optimizer, build_scheduler

__all__ = ["DivergedError", "TrainingModule", "is_scalar"]


class DivergedError(FloatingPointError):
    """The training loss became NaN or infinite."""


def is_scalar(value: Any) -> bool:
    """Whether a metric value is one number (logged per epoch) rather than a matrix."""
    return not isinstance(value, Tensor) or value.numel() == 1


class TrainingModule(pl.LightningModule):
    """Train ``model`` with the pieces of ``training`` as ``config`` says.

    ``data`` describes the datasets (the class count, labels) for the task's metrics and
    batch transform; ``extra`` is stored in every checkpoint's manifest (labels, the run's
    config) so a checkpoint alone tells what it is.
    """

    def __init__(
        self,
        model: nn.Module,
        training: TaskTraining,
        config: TrainConfig,
        data: TrainingData,
        *,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.training_pieces = training
        self.config = config
        self.extra = dict(extra or {})
        self.train_loss_options = LossOptions(label_smoothing=config.label_smoothing)
        self.eval_loss_options = LossOptions()
        self.batch_transform = training.batch_transform(
            mixup=config.mixup, cutmix=config.cutmix, num_outputs=data.num_outputs
        )
        metrics = training.metrics(data)
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.takes_targets = bool(getattr(training, "takes_targets", False))
        """The task's models train as ``model(inputs, targets)`` (see ``TaskTraining``)."""
        # with mixed targets the task's metrics (hard labels) do not apply to train batches,
        # and a model that trains on its targets returns losses, not predictions, there
        self.train_metrics = (
            metrics.clone(prefix="train/")
            if config.train_metrics and self.batch_transform is None and not self.takes_targets
            else None
        )
        self.matrices: dict[str, Tensor] = {}
        """Non-scalar metric values (a confusion matrix) of the latest evaluation."""

    def forward(self, inputs: Any) -> Any:
        return self.model(inputs)

    # -- steps ------------------------------------------------------------------------------
    def training_step(self, batch: tuple[Any, Any], batch_idx: int) -> Tensor:
        inputs, targets = batch
        mixed_targets = targets
        if self.batch_transform is not None:
            inputs, mixed_targets = self.batch_transform(inputs, targets)
        # detectors train as model(images, targets) and return a dict of losses
        args = (inputs, mixed_targets) if self.takes_targets else (inputs,)
        outputs = self.model(*args)
        loss = self.training_pieces.loss(outputs, mixed_targets, self.train_loss_options)
        self.log(
            "train/loss",
            loss.detach(),
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=_count(inputs),
            sync_dist=True,
        )
        if self.train_metrics is not None:
            self.train_metrics.update(_detached(outputs), targets)
        return loss

    def _evaluation_step(self, batch: tuple[Any, Any], stage: str) -> None:
        inputs, targets = batch
        outputs = self.model(inputs)
        if not self.takes_targets:  # a detector in eval mode predicts; it has no loss then
            loss = self.training_pieces.loss(outputs, targets, self.eval_loss_options)
            self.log(
                f"{stage}/loss",
                loss,
                on_step=False,
                on_epoch=True,
                prog_bar=stage == "val",
                batch_size=_count(inputs),
                sync_dist=True,
            )
        self._metrics(stage).update(outputs, targets)

    def validation_step(self, batch: tuple[Any, Any], batch_idx: int) -> None:
        self._evaluation_step(batch, "val")

    def test_step(self, batch: tuple[Any, Any], batch_idx: int) -> None:
        self._evaluation_step(batch, "test")

    def _metrics(self, stage: str) -> Any:
        return {"val": self.val_metrics, "test": self.test_metrics}[stage]

    # -- epoch ends -------------------------------------------------------------------------
    def _log_metrics(self, collection: Any) -> None:
        """Compute (synchronised by torchmetrics), log the scalars, keep the matrices."""
        values = collection.compute()
        for name, value in values.items():
            if is_scalar(value):
                self.log(name, torch.as_tensor(value, dtype=torch.float32).reshape(()))
            elif not self.trainer.sanity_checking:
                self.matrices[name] = value.detach().cpu()
        collection.reset()

    def end_train_epoch(self) -> None:
        """Log the train metrics and stop a diverged run.

        Called by the run recorder's ``on_train_epoch_end``, which Lightning calls before
        the module's own hook and before the checkpoint callback saves: so the epoch's
        row and checkpoint have the train metrics, and a diverged epoch is never saved.
        """
        if self.train_metrics is not None:
            self._log_metrics(self.train_metrics)
        loss = self.trainer.callback_metrics.get("train/loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise DivergedError(
                f"training diverged in epoch {self.current_epoch + 1}: the loss is "
                f"{float(loss)}; lower learning_rate (now {self.config.learning_rate:g}) or "
                "set gradient_clip"
            )

    def on_validation_epoch_end(self) -> None:
        self._log_metrics(self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_metrics(self.test_metrics)

    # -- optimization -----------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        config = self.config
        optimizer = build_optimizer(config, self.model, include_frozen=config.probe_epochs > 0)
        total = int(self.trainer.estimated_stepping_batches)
        steps_per_epoch = max(1, math.ceil(total / max(1, config.epochs)))
        monitor = str(getattr(self.training_pieces, "monitor", "val/loss"))
        mode = str(getattr(self.training_pieces, "monitor_mode", "min"))
        scheduler = build_scheduler(
            config, optimizer, steps_per_epoch=steps_per_epoch, monitor=monitor, mode=mode
        )
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    # -- checkpoints ------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        metrics = {
            name: float(value)
            for name, value in self.trainer.callback_metrics.items()
            if is_scalar(value)
        }
        checkpoint[EXTRA_KEY] = {"metrics": metrics, "extra": self.extra}
        checkpoint[RNG_KEY] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get(RNG_KEY)
        if isinstance(states, dict):
            restore_rng_states(states)


RNG_KEY = "rng_states"


def rng_states() -> dict[str, Any]:
    """The random generators' states (Python, NumPy, torch CPU and CUDA), checkpointable.

    Restored on resume, so that shuffling, augmentation, dropout and mixup continue as
    in a run that was never stopped.
    """
    import random

    import numpy as np

    kind, keys, position, has_gauss, gauss = np.random.get_state(legacy=True)
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Set the generators to ``states`` from :func:`rng_states` (missing parts stay)."""
    import random

    import numpy as np

    if "python" in states:
        version, internal, gauss = states["python"]
        random.setstate((version, tuple(internal), gauss))
    numpy_state = states.get("numpy")
    if isinstance(numpy_state, dict):
        np.random.set_state(
            (
                numpy_state["kind"],
                numpy_state["keys"].numpy().astype(np.uint32),
                numpy_state["position"],
                numpy_state["has_gauss"],
                numpy_state["gauss"],
            )
        )
    if "torch" in states:
        torch.set_rng_state(states["torch"].to(torch.uint8).cpu())
    cuda = states.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.to(torch.uint8).cpu() for s in cuda])


def _count(inputs: Any) -> int:
    if isinstance(inputs, Tensor):
        return int(inputs.shape[0])
    return len(inputs)


def _detached(outputs: Any) -> Any:
    if isinstance(outputs, Tensor):
        return outputs.detach()
    if isinstance(outputs, dict):
        return {k: _detached(v) for k, v in outputs.items()}
    return outputs
