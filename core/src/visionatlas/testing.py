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

This module is imported when pytest starts, so it imports neither torch nor pydantic at
module level.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from visionatlas.catalog import Catalog, get_catalog, use_catalog
from visionatlas.registry import PluginReport

if TYPE_CHECKING:
    from torch import nn

try:  # fixtures only when pytest is around; the helpers work without it
    import pytest
except ImportError:  # pragma: no cover - pytest is a test-time dependency
    pytest = None  # type: ignore[assignment]

__all__ = [
    "ArchitectureCheck",
    "CheckFailed",
    "check_architecture",
    "check_plugin",
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

    from visionatlas.inspection import count_parameters, infer_output_shape, shapes_of

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
