""":func:`check_training`: a task's training pieces, run together on a tiny dataset."""

from __future__ import annotations

from collections.abc import Mapping, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionatlas.catalog import Catalog, get_catalog
from visionatlas.testing._common import CheckFailed, build_model, call

if TYPE_CHECKING:
    from visionatlas.training.protocol import TaskTraining

__all__ = ["TrainingCheck", "check_training"]


@dataclass(frozen=True)
class TrainingCheck:
    """What :func:`check_training` measured."""

    task: str
    architecture: str
    num_outputs: int
    labels: list[str]
    train_size: int
    val_size: int
    loss: float
    """The loss of one training batch (before any update)."""
    metrics: dict[str, float]
    """The scalar metrics after one update with that batch."""
    batch_transform: bool
    """Whether the task returned a batch transform for ``mixup=0.2``."""
    skipped: int
    """Files the data reader skipped."""


def check_training(
    task: str,
    *,
    data: str | Path,
    architecture: str | None = None,
    catalog: Catalog | None = None,
    model_config: Mapping[str, Any] | None = None,
    batch_size: int = 4,
    input_size: tuple[int, int] = (32, 32),
    cache_dir: Path | None = None,
    evaluate: bool = True,
) -> TrainingCheck:
    """Check that the training pieces of ``task`` fit together on a tiny dataset ``data``.

    Loads the task's :class:`~visionatlas.training.protocol.TaskTraining` (registered with
    ``visionatlas_register_training``), reads ``data`` (a path or ``builtin:NAME``) for
    fitting, collates one batch, runs ``architecture`` (default: the task's demo
    architecture) built with the data's ``num_outputs`` in training mode, computes the loss
    (a finite scalar with a gradient that reaches the model's parameters), updates and
    computes the metrics (a ``MetricCollection`` holding the ``monitor`` metric, finite
    scalars), and calls ``batch_transform`` (off for ``mixup=cutmix=0``; for ``mixup=0.2``
    either refused with a ``ValueError`` or a transform whose batch gives a finite loss).
    With ``evaluate=True`` the data is also read for evaluation with the labels found, as
    an engine does when it evaluates a trained model.
    """
    import torch

    from visionatlas.training.protocol import DataRequest, LossOptions, TaskTraining

    catalog = catalog or get_catalog()
    label = f"training of {task!r}"
    training = call(label, "loading it", catalog.load_training, task)
    if not isinstance(training, TaskTraining):
        raise CheckFailed(
            f"{label}: the task trains with its own fit (a CustomFitTraining, "
            f"{type(training).__name__}); check_training checks the pieces of per-batch "
            "training (collate, loss, metrics): test its fit and evaluate directly"
        )
    _check_training_attributes(training, task)

    request = DataRequest(input_size=input_size, cache_dir=cache_dir)
    prepared = call(
        label, f"prepare_data({str(data)!r})", training.prepare_data, str(data), request
    )
    _check_training_data(prepared, label, fit=True)
    train = prepared.train
    items = [train[i] for i in range(min(batch_size, _length(train, label, "train")))]
    inputs, targets = call(label, "collate", training.collate, items)

    name = architecture or catalog.get_task(task).demo_architecture
    if name is None:
        raise CheckFailed(f"{label}: task {task!r} has no demo architecture; pass architecture=")
    model = build_model(catalog, task, name, model_config, prepared.num_outputs).train()
    outputs = call(label, f"the forward pass of {task}/{name} on the collated batch", model, inputs)
    loss = call(label, "loss", training.loss, outputs, targets, LossOptions())
    _check_loss(loss, label, "loss")
    call(label, "backward through the loss", loss.backward)
    if not any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.parameters()):
        raise CheckFailed(f"{label}: the loss has a gradient, but none reaches {task}/{name}")

    metrics = call(label, "metrics", training.metrics, prepared)
    values = _metric_values(metrics, outputs, targets, training, label)

    off = call(
        label,
        "batch_transform(mixup=0, cutmix=0)",
        training.batch_transform,
        mixup=0.0,
        cutmix=0.0,
        num_outputs=prepared.num_outputs,
    )
    if off is not None:
        raise CheckFailed(f"{label}: batch_transform with mixup=0 and cutmix=0 should be None")
    try:
        mix = training.batch_transform(mixup=0.2, cutmix=0.0, num_outputs=prepared.num_outputs)
    except ValueError:
        mix = None  # the task declines mixup, as it may
    except Exception as err:
        raise CheckFailed(
            f"{label}: batch_transform(mixup=0.2) raised {type(err).__name__} (a task that "
            f"cannot mix must raise ValueError): {err}"
        ) from err
    if mix is not None:
        mixed_inputs, mixed_targets = call(label, "the batch transform", mix, inputs, targets)
        if getattr(mixed_inputs, "shape", None) != getattr(inputs, "shape", None):
            raise CheckFailed(f"{label}: the batch transform changed the input shape")
        with torch.no_grad():
            mixed_loss = call(
                label,
                "loss on a mixed batch",
                training.loss,
                model(mixed_inputs),
                mixed_targets,
                LossOptions(),
            )
        _check_loss(mixed_loss, label, "loss on a mixed batch", grad=False)

    if evaluate:
        held_request = DataRequest(
            purpose="evaluate",
            input_size=input_size,
            cache_dir=cache_dir,
            labels=tuple(prepared.labels),
        )
        held = call(
            label,
            "prepare_data(purpose='evaluate')",
            training.prepare_data,
            str(data),
            held_request,
        )
        _check_training_data(held, label, fit=False)
        if held.num_outputs != prepared.num_outputs or list(held.labels) != list(prepared.labels):
            raise CheckFailed(
                f"{label}: evaluating with labels={prepared.labels} gave num_outputs="
                f"{held.num_outputs} and labels={held.labels}; they should be the same"
            )

    return TrainingCheck(
        task=task,
        architecture=name,
        num_outputs=prepared.num_outputs,
        labels=list(prepared.labels),
        train_size=_length(train, label, "train"),
        val_size=_length(prepared.val, label, "val"),
        loss=float(loss.detach()),
        metrics=values,
        batch_transform=mix is not None,
        skipped=len(prepared.skipped),
    )


def _check_training_attributes(training: TaskTraining, task: str) -> None:
    from collections.abc import Mapping as MappingABC

    label = f"training of {task!r}"
    if training.task != task:
        raise CheckFailed(f"{label}: its task attribute is {training.task!r}")
    if not isinstance(training.monitor, str) or not training.monitor.startswith("val/"):
        raise CheckFailed(
            f"{label}: monitor must name a validation metric such as 'val/acc1', got "
            f"{training.monitor!r}"
        )
    if training.monitor_mode not in ("min", "max"):
        raise CheckFailed(
            f"{label}: monitor_mode must be 'min' or 'max', got {training.monitor_mode!r}"
        )
    if not isinstance(training.builtin_datasets, MappingABC) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in training.builtin_datasets.items()
    ):
        raise CheckFailed(f"{label}: builtin_datasets must map names to descriptions")


def _check_training_data(prepared: object, label: str, *, fit: bool) -> None:
    from visionatlas.training.protocol import TrainingData

    purpose = "fit" if fit else "evaluate"
    if not isinstance(prepared, TrainingData):
        raise CheckFailed(
            f"{label}: prepare_data(purpose={purpose!r}) returned a {type(prepared).__name__}, "
            "not a TrainingData"
        )
    if fit and (prepared.train is None or _length(prepared.train, label, "train") == 0):
        raise CheckFailed(f"{label}: prepare_data(purpose='fit') gave no training items")
    if not fit and prepared.train is not None:
        raise CheckFailed(f"{label}: prepare_data(purpose='evaluate') should leave train=None")
    if prepared.val is None or _length(prepared.val, label, "val") == 0:
        raise CheckFailed(f"{label}: prepare_data(purpose={purpose!r}) gave no validation items")
    outputs = prepared.num_outputs
    if isinstance(outputs, bool) or not isinstance(outputs, int) or outputs < 1:
        raise CheckFailed(f"{label}: num_outputs must be a positive int, got {outputs!r}")
    if prepared.labels and len(prepared.labels) != outputs:
        raise CheckFailed(
            f"{label}: {len(prepared.labels)} labels for num_outputs={outputs}; give one per "
            "output (or none)"
        )


def _length(dataset: object, label: str, split: str) -> int:
    if not isinstance(dataset, Sized):
        raise CheckFailed(
            f"{label}: the {split} dataset ({type(dataset).__name__}) has no len(); engines "
            "need map-style datasets with __len__ and __getitem__"
        )
    return len(dataset)


def _check_loss(loss: object, label: str, what: str, *, grad: bool = True) -> None:
    import torch

    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise CheckFailed(f"{label}: the {what} must be a scalar tensor, got {shape}")
    if not bool(torch.isfinite(loss)):
        raise CheckFailed(f"{label}: the {what} is not finite ({float(loss.detach())})")
    if grad and not loss.requires_grad:
        raise CheckFailed(f"{label}: the {what} has no gradient (was it detached?)")


def _metric_values(
    metrics: object, outputs: Any, targets: Any, training: TaskTraining, label: str
) -> dict[str, float]:
    import torch
    from torchmetrics import MetricCollection

    if not isinstance(metrics, MetricCollection):
        raise CheckFailed(
            f"{label}: metrics() returned a {type(metrics).__name__}, not a "
            "torchmetrics.MetricCollection"
        )
    with torch.no_grad():
        call(label, "updating the metrics", metrics.update, outputs.detach(), targets)
    computed = call(label, "computing the metrics", metrics.compute)
    values: dict[str, float] = {}
    for key, value in computed.items():
        if isinstance(value, torch.Tensor) and value.ndim == 0:
            if not bool(torch.isfinite(value)):
                raise CheckFailed(f"{label}: metric {key!r} is not finite ({float(value)})")
            values[key] = float(value)
    monitored = training.monitor.removeprefix("val/")
    if monitored not in values:
        raise CheckFailed(
            f"{label}: the monitored metric {training.monitor!r} needs a scalar "
            f"{monitored!r} in metrics(); it has {', '.join(sorted(computed)) or 'none'}"
        )
    return values
