"""Optimizers and learning-rate schedules from a :class:`~visionatlas_train.config.TrainConfig`.

Named schedules are torch's own schedulers, built with their durations converted from
epochs to optimizer steps and stepped after every optimizer step. A warm-up
(``LinearLR``) and a probing phase (``LambdaLR`` at ``probe_learning_rate``) go in front
of the main schedule with ``SequentialLR``, so the whole schedule is one torch scheduler
whose ``state_dict`` a checkpoint restores.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim import lr_scheduler as schedulers

from visionatlas_train.config import SCHEDULERS, TrainConfig

__all__ = ["WARMUP_START_FACTOR", "build_optimizer", "build_scheduler", "parameter_groups"]

WARMUP_START_FACTOR = 0.01
"""A warm-up starts at this fraction of the learning rate and rises linearly to it."""


def parameter_groups(
    named: Iterable[tuple[str, nn.Parameter]], weight_decay: float
) -> list[dict[str, Any]]:
    """Two groups: weights with ``weight_decay``; biases and normalization weights (one
    dimension or none) without, as timm and torchvision's references do."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for _, parameter in named:
        (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(
    config: TrainConfig, model: nn.Module, *, include_frozen: bool = False
) -> Optimizer:
    """The configured optimizer over ``model``'s trainable parameters.

    ``include_frozen`` adds the parameters that do not require gradients now (a backbone
    frozen for a probing phase, to be unfrozen later); optimizers skip parameters without
    gradients, so they are untouched until then.
    """
    named = [(name, p) for name, p in model.named_parameters() if include_frozen or p.requires_grad]
    if not named:
        raise ValueError("the model has no trainable parameters (is everything frozen?)")
    cls = config.optimizer.resolve_class()
    groups = parameter_groups(named, config.weight_decay)
    try:
        optimizer: Optimizer = cls(
            groups, lr=config.learning_rate, **config.optimizer.keyword_arguments()
        )
    except (TypeError, ValueError) as err:
        raise ValueError(f"cannot build optimizer {config.optimizer.label}: {err}") from err
    return optimizer


def _epochs_to_steps(epochs: float, steps_per_epoch: int) -> int:
    return max(1, round(epochs * steps_per_epoch))


def build_scheduler(
    config: TrainConfig,
    optimizer: Optimizer,
    *,
    steps_per_epoch: int,
    monitor: str,
    mode: str,
) -> dict[str, Any] | None:
    """A Lightning ``lr_scheduler`` config for ``optimizer``, or ``None`` for a constant LR.

    ``steps_per_epoch`` is the number of optimizer steps in an epoch; ``monitor`` and
    ``mode`` are what a plateau schedule watches.
    """
    spec = config.scheduler
    if spec.is_plateau:  # a plateau schedule never has a warm-up or probe (config check)
        params = {**SCHEDULERS["plateau"], **spec.params} if spec.name else dict(spec.params)
        if spec.name:
            params.setdefault("mode", mode)
        plateau = (
            schedulers.ReduceLROnPlateau(optimizer, **params)
            if spec.name
            else spec.resolve_class()(optimizer, **params)
        )
        return {"scheduler": plateau, "interval": "epoch", "monitor": monitor, "strict": True}
    per_step = spec.name is not None or spec.interval == "step"
    unit = steps_per_epoch if per_step else 1
    probe = config.probe_epochs * unit
    warmup = _epochs_to_steps(config.warmup_epochs, unit) if config.warmup_epochs else 0
    main_epochs = config.epochs - config.probe_epochs - config.warmup_epochs
    main_steps = max(1, math.ceil(main_epochs * unit))
    phases: list[schedulers.LRScheduler] = []
    milestones: list[int] = []
    if probe:  # probe_learning_rate until the probe's end, then the schedule
        ratio = config.probe_lr / config.learning_rate
        phases.append(schedulers.LambdaLR(optimizer, lambda _: ratio))
        milestones.append(probe)
    if warmup:
        phases.append(
            schedulers.LinearLR(
                optimizer, start_factor=WARMUP_START_FACTOR, end_factor=1.0, total_iters=warmup
            )
        )
        milestones.append(milestones[-1] + warmup if milestones else warmup)
    main = _main_schedule(config, optimizer, main_steps, unit)
    if main is not None:
        phases.append(main)
    elif phases:
        phases.append(schedulers.ConstantLR(optimizer, factor=1.0, total_iters=0))
    if not phases:
        return None
    scheduler = (
        phases[0]
        if len(phases) == 1
        else schedulers.SequentialLR(optimizer, phases, milestones=milestones)
    )
    return {"scheduler": scheduler, "interval": "step" if per_step else "epoch"}


def _main_schedule(
    config: TrainConfig, optimizer: Optimizer, steps: int, unit: int
) -> schedulers.LRScheduler | None:
    """The schedule after the probe and warm-up, over ``steps`` steps (``unit`` a epoch)."""
    spec = config.scheduler
    if spec.class_ is not None:
        built: schedulers.LRScheduler = spec.resolve_class()(optimizer, **spec.params)
        return built
    name = str(spec.name)
    params = {**SCHEDULERS[name], **spec.params}
    epochs = max(1, round(steps / unit))
    if name == "none":
        return None
    if name == "cosine":
        return schedulers.CosineAnnealingLR(optimizer, T_max=steps, eta_min=params["eta_min"])
    if name == "step":
        size = params["step_size"] if params["step_size"] is not None else max(1, epochs // 3)
        return schedulers.StepLR(optimizer, step_size=size * unit, gamma=params["gamma"])
    if name == "multistep":
        milestones = params["milestones"]
        if milestones is None:
            milestones = sorted({max(1, round(epochs * 0.5)), max(1, round(epochs * 0.75))})
        return schedulers.MultiStepLR(
            optimizer, milestones=[m * unit for m in milestones], gamma=params["gamma"]
        )
    if name == "exponential":
        return schedulers.ExponentialLR(optimizer, gamma=params["gamma"] ** (1.0 / unit))
    if name == "onecycle":
        return schedulers.OneCycleLR(
            optimizer,
            max_lr=config.learning_rate,
            total_steps=steps,
            cycle_momentum=_has_momentum(optimizer),
            **params,
        )
    if name == "cosine_restarts":
        period = params["T_0"] if params["T_0"] is not None else max(1, epochs // 3)
        return schedulers.CosineAnnealingWarmRestarts(
            optimizer, T_0=period * unit, T_mult=params["T_mult"], eta_min=params["eta_min"]
        )
    raise AssertionError(f"unhandled scheduler {name!r}")  # pragma: no cover - config checks


def _has_momentum(optimizer: Optimizer) -> bool:
    defaults = optimizer.defaults
    return "betas" in defaults or float(defaults.get("momentum", 0.0) or 0.0) > 0.0


def learning_rates(optimizer: Optimizer) -> list[float]:
    """The current learning rate of each parameter group."""
    return [float(torch.as_tensor(group["lr"])) for group in optimizer.param_groups]
