"""Helpers for testing visionatlas plugins; also a pytest plugin (``pytest11`` entry point).

Fixtures (available in every pytest session where visionatlas is installed):

``visionatlas_catalog``
    A fresh catalog with normal discovery (built-ins and entry points), process-wide for
    the test.
``isolated_visionatlas_catalog``
    A fresh catalog with the built-ins only, process-wide for the test.

Checks raise :class:`CheckFailed` (an ``AssertionError``) with a message that says what is
wrong, so they read well in pytest output::

    from visionatlas.testing import check_architecture, check_plugin

    def test_my_plugin():
        check_plugin("my-plugin")
        check_architecture("classification", "my_net")
        check_training("my_task", data="tests/data/tiny", architecture="resnet18")

This module is imported when pytest starts, so it imports neither torch nor pydantic at
module level.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence, Sized
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionatlas.catalog import Catalog, get_catalog, use_catalog
from visionatlas.plugins.registrar import PluginReport

if TYPE_CHECKING:
    from torch import nn

    from visionatlas.training.protocol import TaskTraining

try:  # fixtures only when pytest is around; the helpers work without it
    import pytest
except ImportError:  # pragma: no cover - pytest is a test-time dependency
    pytest = None  # type: ignore[assignment]

__all__ = [
    "ArchitectureCheck",
    "CheckFailed",
    "TrainingCheck",
    "check_architecture",
    "check_plugin",
    "check_training",
    "isolated_catalog",
]


class CheckFailed(AssertionError):
    """A plugin or architecture does not meet the visionatlas plugin contract."""


@contextmanager
def isolated_catalog(
    *plugins: object, builtins: bool = True, entry_points: bool = False
) -> Iterator[Catalog]:
    """A catalog holding only ``plugins`` (plus built-ins), process-wide inside the block.

    ``plugins`` are modules or objects with ``@hookimpl`` functions, registered after the
    built-ins (and after entry points when ``entry_points=True``) in the order given.
    """
    catalog = Catalog(builtins=builtins, entry_points=entry_points, plugins=plugins)
    with use_catalog(catalog):
        yield catalog


def _report(name: str, catalog: Catalog) -> PluginReport:
    reports = catalog.list_plugins()
    for report in reports:
        if report.name == name:
            return report
    by_distribution = [r for r in reports if r.distribution == name]
    if len(by_distribution) == 1:
        return by_distribution[0]
    known = ", ".join(r.name for r in reports) or "none"
    raise CheckFailed(f"no plugin named {name!r} was discovered; discovered plugins: {known}")


def check_plugin(name: str, catalog: Catalog | None = None) -> PluginReport:
    """Check that plugin ``name`` (entry-point or distribution name) loaded cleanly.

    Fails if the plugin is unknown, was not loaded, reported any problem other than a
    warning (a slow hook, which depends on the machine), or registered nothing. Returns its
    report.
    """
    catalog = catalog or get_catalog()
    report = _report(name, catalog)
    if report.status != "ok" or report.errors:
        problems = "".join(f"\n  - {problem}" for problem in report.problems) or " (none)"
        raise CheckFailed(
            f"plugin {report.name!r} ({report.distribution} {report.version}) has status "
            f"{report.status!r}; problems:{problems}"
        )
    if not any(report.registered.values()):
        raise CheckFailed(
            f"plugin {report.name!r} ({report.distribution} {report.version}) loaded but "
            "registered nothing: do its hooks call registry.add_*(...)?"
        )
    return report


@dataclass(frozen=True)
class ArchitectureCheck:
    """What :func:`check_architecture` measured."""

    task: str
    name: str
    input_shape: Any
    output_shape: Any
    num_params: int
    """Parameters of the model built for the check (with its ``num_classes``)."""
    default_num_params: int | None
    """Parameters with the default config and ``default_num_classes``, when compared."""


def _build(
    catalog: Catalog,
    task: str,
    name: str,
    config: Mapping[str, Any] | None,
    num_classes: int | None,
) -> nn.Module:
    try:
        return catalog.create_model(task, name, config, num_classes)
    except Exception as err:
        raise CheckFailed(
            f"cannot build {task}/{name} with config={dict(config or {})} and "
            f"num_classes={num_classes}: {type(err).__name__}: {err}"
        ) from err


def _example_inputs(
    catalog: Catalog, task: str, batch_size: int, input_size: tuple[int, int]
) -> Any:
    try:
        return catalog.example_inputs(task, batch_size=batch_size, input_size=input_size)
    except Exception as err:
        factory = catalog.get_task(task).example_inputs or "the default image batch"
        raise CheckFailed(
            f"the example_inputs {factory!r} of task {task!r} failed: {type(err).__name__}: {err}"
        ) from err


def check_architecture(
    task: str,
    name: str,
    *,
    catalog: Catalog | None = None,
    num_classes: int = 3,
    batch_size: int = 2,
    input_size: tuple[int, int] = (64, 64),
    infer_shape: bool = True,
) -> ArchitectureCheck:
    """Build ``task/name``, run it, and check it against its spec.

    Checks that the model builds and runs a forward pass (eval mode, no grad) on the task's
    example inputs; that :func:`visionatlas.infer_output_shape` agrees with the real output
    shape (tensor outputs); that ``num_params`` in the spec matches a model built with the
    default config and ``default_num_classes``; and, for models with a ``head``, that
    ``freeze_backbone=True`` leaves exactly the head's parameters trainable (for models with
    ``backbone_stages()``, such as detectors and segmenters, that those stages freeze).

    Pass ``infer_shape=False`` for models whose output shape depends on tensor values
    (shape inference runs on the meta device and cannot trace them).
    """
    import torch

    from visionatlas.models.inspection import count_parameters, infer_output_shape, shapes_of

    catalog = catalog or get_catalog()
    spec = catalog.get_architecture(task, name)
    label = f"{task}/{name}"

    model = _build(catalog, task, name, None, num_classes).eval()
    inputs = _example_inputs(catalog, task, batch_size, input_size)
    try:
        with torch.no_grad():
            output = model(inputs)
    except Exception as err:
        raise CheckFailed(
            f"{label}: forward pass on example inputs {shapes_of(inputs)} failed: "
            f"{type(err).__name__}: {err}"
        ) from err
    output_shape = shapes_of(output)

    if infer_shape and isinstance(output, torch.Tensor):
        try:
            inferred = infer_output_shape(model, inputs)
        except Exception as err:
            raise CheckFailed(
                f"{label}: infer_output_shape failed although the forward pass worked: "
                f"{type(err).__name__}: {err}"
            ) from err
        if inferred != output_shape:
            raise CheckFailed(
                f"{label}: infer_output_shape gives {inferred}, but the forward pass "
                f"returned {output_shape}"
            )

    default_num_params = None
    if spec.num_params is not None:
        if num_classes == spec.default_num_classes:
            default_model = model
        else:
            default_model = _build(catalog, task, name, None, None)
        default_num_params = count_parameters(default_model, trainable_only=False)
        if default_num_params != spec.num_params:
            raise CheckFailed(
                f"{label}: the spec says num_params={spec.num_params:,}, but the model built "
                f"with the default config and default_num_classes={spec.default_num_classes} "
                f"has {default_num_params:,} parameters "
                f"(difference {default_num_params - spec.num_params:+,})"
            )

    if callable(getattr(model, "backbone_stages", None)):
        _check_frozen_stages(catalog, task, name, num_classes)
    elif isinstance(getattr(model, "head", None), torch.nn.Module):
        _check_freeze_backbone(catalog, task, name, num_classes)

    return ArchitectureCheck(
        task=task,
        name=name,
        input_shape=shapes_of(inputs),
        output_shape=output_shape,
        num_params=count_parameters(model, trainable_only=False),
        default_num_params=default_num_params,
    )


def _check_frozen_stages(catalog: Catalog, task: str, name: str, num_classes: int) -> None:
    """Models with ``backbone_stages()`` (detectors, segmenters): those stages freeze."""
    frozen = _build(catalog, task, name, {"freeze_backbone": True}, num_classes)
    names = {id(p): n for n, p in frozen.named_parameters()}
    stages: list[nn.Module] = getattr(frozen, "backbone_stages")()  # noqa: B009
    trainable = sorted(
        names[id(p)] for stage in stages for p in stage.parameters() if p.requires_grad
    )
    if trainable:
        raise CheckFailed(
            f"{task}/{name}: with freeze_backbone=True every backbone stage should be frozen; "
            f"trainable: {_few(trainable)}"
        )
    if not any(p.requires_grad for p in frozen.parameters()):
        raise CheckFailed(f"{task}/{name}: with freeze_backbone=True nothing is trainable")


def _check_freeze_backbone(catalog: Catalog, task: str, name: str, num_classes: int) -> None:
    from torch import nn

    frozen = _build(catalog, task, name, {"freeze_backbone": True}, num_classes)
    head = getattr(frozen, "head", None)
    if not isinstance(head, nn.Module):
        raise CheckFailed(
            f"{task}/{name}: the model has a head module, but not when built with "
            "freeze_backbone=True"
        )
    head_ids = {id(p) for p in head.parameters()}
    trainable = {n for n, p in frozen.named_parameters() if p.requires_grad}
    head_names = {n for n, p in frozen.named_parameters() if id(p) in head_ids}
    frozen_head = sorted(head_names - trainable)
    trainable_body = sorted(trainable - head_names)
    if frozen_head or trainable_body:
        details = []
        if trainable_body:
            details.append(f"trainable outside the head: {_few(trainable_body)}")
        if frozen_head:
            details.append(f"frozen in the head: {_few(frozen_head)}")
        raise CheckFailed(
            f"{task}/{name}: with freeze_backbone=True exactly the head's parameters should be "
            f"trainable; {'; '.join(details)}"
        )


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


def _call(label: str, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return function(*args, **kwargs)
    except CheckFailed:
        raise
    except Exception as err:
        raise CheckFailed(f"{label}: {what} failed: {type(err).__name__}: {err}") from err


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
    training = _call(label, "loading it", catalog.load_training, task)
    if not isinstance(training, TaskTraining):
        raise CheckFailed(
            f"{label}: the task trains with its own fit (a CustomFitTraining, "
            f"{type(training).__name__}); check_training checks the pieces of per-batch "
            "training (collate, loss, metrics): test its fit and evaluate directly"
        )
    _check_training_attributes(training, task)

    request = DataRequest(input_size=input_size, cache_dir=cache_dir)
    prepared = _call(
        label, f"prepare_data({str(data)!r})", training.prepare_data, str(data), request
    )
    _check_training_data(prepared, label, fit=True)
    train = prepared.train
    items = [train[i] for i in range(min(batch_size, _length(train, label, "train")))]
    inputs, targets = _call(label, "collate", training.collate, items)

    name = architecture or catalog.get_task(task).demo_architecture
    if name is None:
        raise CheckFailed(f"{label}: task {task!r} has no demo architecture; pass architecture=")
    model = _build(catalog, task, name, model_config, prepared.num_outputs).train()
    outputs = _call(
        label, f"the forward pass of {task}/{name} on the collated batch", model, inputs
    )
    loss = _call(label, "loss", training.loss, outputs, targets, LossOptions())
    _check_loss(loss, label, "loss")
    _call(label, "backward through the loss", loss.backward)
    if not any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.parameters()):
        raise CheckFailed(f"{label}: the loss has a gradient, but none reaches {task}/{name}")

    metrics = _call(label, "metrics", training.metrics, prepared)
    values = _metric_values(metrics, outputs, targets, training, label)

    off = _call(
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
        mixed_inputs, mixed_targets = _call(label, "the batch transform", mix, inputs, targets)
        if getattr(mixed_inputs, "shape", None) != getattr(inputs, "shape", None):
            raise CheckFailed(f"{label}: the batch transform changed the input shape")
        with torch.no_grad():
            mixed_loss = _call(
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
        held = _call(
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
        _call(label, "updating the metrics", metrics.update, outputs.detach(), targets)
    computed = _call(label, "computing the metrics", metrics.compute)
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


def _few(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


if pytest is not None:

    @pytest.fixture
    def visionatlas_catalog() -> Iterator[Catalog]:
        """A fresh catalog with normal discovery, process-wide for the test."""
        with use_catalog(Catalog()) as catalog:
            yield catalog

    @pytest.fixture
    def isolated_visionatlas_catalog() -> Iterator[Catalog]:
        """A fresh catalog with the built-in plugins only, process-wide for the test."""
        with isolated_catalog() as catalog:
            yield catalog
