""":func:`check_architecture`: build a task's architecture, run it, compare it with its spec."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from visionatlas.catalog import Catalog, get_catalog
from visionatlas.testing._common import CheckFailed, build_model, call, few, with_options

if TYPE_CHECKING:
    from torch import nn

    from visionatlas.config import ModelConfig

__all__ = ["ArchitectureCheck", "check_architecture"]

CHECK_NUM_CLASSES = 3
"""What models of tasks with classes are built with: not a default, so ignoring it shows."""


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
    config: ModelConfig | Mapping[str, Any] | None = None,
    num_classes: int | None = None,
    batch_size: int = 2,
    input_size: tuple[int, int] = (64, 64),
    infer_shape: bool = True,
) -> ArchitectureCheck:
    """Build ``task/name`` with ``config``, run it, and check it against its spec.

    The model is built with ``create_model(task, name, config, num_classes)``. Without
    ``num_classes`` it is 3 for a task whose ``num_classes`` counts classes
    (``TaskSpec.uses_num_classes``), else the architecture's ``default_num_classes``.

    Checks that the model builds and runs a forward pass (eval mode, no grad) on the task's
    example inputs; for a task with classes, that a tensor output has ``num_classes``
    entries in dimension 1; that :func:`visionatlas.infer_output_shape` agrees with the
    real output shape (tensor outputs); that ``num_params`` in the spec matches a model
    built with the default config (whatever ``config`` is) and ``default_num_classes``;
    and, for models with a ``head``, that ``freeze_backbone=True`` leaves exactly the head's
    parameters trainable (for models with ``backbone_stages()``, such as detectors and
    segmenters, that those stages freeze).

    ``config`` lets a generic architecture be checked on another backbone, for example
    ``config={"backbone": "my_backbone"}``. Pass ``infer_shape=False`` for models whose
    output shape depends on tensor values (shape inference runs on the meta device and
    cannot trace them).
    """
    import torch

    from visionatlas.models.inspection import count_parameters, infer_output_shape, shapes_of

    catalog = catalog or get_catalog()
    label = f"{task}/{name}"
    spec = call(label, "looking it up", catalog.get_architecture, task, name)
    uses_classes = catalog.get_task(task).uses_num_classes
    if num_classes is None:
        num_classes = CHECK_NUM_CLASSES if uses_classes else spec.default_num_classes

    model = build_model(catalog, task, name, config, num_classes).eval()
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

    per_class = uses_classes and isinstance(output, torch.Tensor) and output.ndim >= 2
    if per_class and output.shape[1] != num_classes:
        raise CheckFailed(
            f"{label}: built with num_classes={num_classes}, but its output {output_shape} "
            f"has {output.shape[1]} in dimension 1, where task {task!r} has one entry per "
            "class; does the builder ignore num_classes?"
        )

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
        if config is None and num_classes == spec.default_num_classes:
            default_model = model
        else:
            default_model = build_model(catalog, task, name, None, None, meta=True)
        default_num_params = count_parameters(default_model, trainable_only=False)
        if default_num_params != spec.num_params:
            raise CheckFailed(
                f"{label}: the spec says num_params={spec.num_params:,}, but the model built "
                f"with the default config and default_num_classes={spec.default_num_classes} "
                f"has {default_num_params:,} parameters "
                f"(difference {default_num_params - spec.num_params:+,})"
            )

    if callable(getattr(model, "backbone_stages", None)):
        _check_frozen_stages(catalog, task, name, config, num_classes)
    elif isinstance(getattr(model, "head", None), torch.nn.Module):
        _check_freeze_backbone(catalog, task, name, config, num_classes)

    return ArchitectureCheck(
        task=task,
        name=name,
        input_shape=shapes_of(inputs),
        output_shape=output_shape,
        num_params=count_parameters(model, trainable_only=False),
        default_num_params=default_num_params,
    )


def _build_frozen(
    catalog: Catalog,
    task: str,
    name: str,
    config: ModelConfig | Mapping[str, Any] | None,
    num_classes: int,
) -> nn.Module:
    frozen_config = with_options(config, freeze_backbone=True)
    return build_model(catalog, task, name, frozen_config, num_classes, meta=True)


def _check_frozen_stages(
    catalog: Catalog,
    task: str,
    name: str,
    config: ModelConfig | Mapping[str, Any] | None,
    num_classes: int,
) -> None:
    """Models with ``backbone_stages()`` (detectors, segmenters): those stages freeze."""
    frozen = _build_frozen(catalog, task, name, config, num_classes)
    names = {id(p): n for n, p in frozen.named_parameters()}
    stages: list[nn.Module] = getattr(frozen, "backbone_stages")()  # noqa: B009
    trainable = sorted(
        names[id(p)] for stage in stages for p in stage.parameters() if p.requires_grad
    )
    if trainable:
        raise CheckFailed(
            f"{task}/{name}: with freeze_backbone=True every backbone stage should be frozen; "
            f"trainable: {few(trainable)}"
        )
    if not any(p.requires_grad for p in frozen.parameters()):
        raise CheckFailed(f"{task}/{name}: with freeze_backbone=True nothing is trainable")


def _check_freeze_backbone(
    catalog: Catalog,
    task: str,
    name: str,
    config: ModelConfig | Mapping[str, Any] | None,
    num_classes: int,
) -> None:
    from torch import nn

    frozen = _build_frozen(catalog, task, name, config, num_classes)
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
            details.append(f"trainable outside the head: {few(trainable_body)}")
        if frozen_head:
            details.append(f"frozen in the head: {few(frozen_head)}")
        raise CheckFailed(
            f"{task}/{name}: with freeze_backbone=True exactly the head's parameters should be "
            f"trainable; {'; '.join(details)}"
        )
