"""Module-level functions over the process-wide catalog (see :func:`get_catalog`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from visionatlas.catalog import get_catalog
from visionatlas.plugins.registrar import PluginReport
from visionatlas.specs import ArchitectureSpec, BackboneSpec, TaskSpec

if TYPE_CHECKING:
    from torch import nn

    from visionatlas.config import BackboneConfig, ModelConfig
    from visionatlas.models.backbones.base import Backbone

__all__ = [
    "config_schema",
    "create_backbone",
    "create_head",
    "create_model",
    "get_architecture",
    "get_backbone",
    "get_task",
    "list_architectures",
    "list_backbones",
    "list_heads",
    "list_plugins",
    "list_tasks",
    "register",
    "register_plugin",
]


def create_model(
    task: str,
    architecture: str,
    config: ModelConfig | Mapping[str, Any] | None = None,
    num_classes: int | None = None,
    *,
    check_inputs: bool = False,
) -> nn.Module:
    """Build ``architecture`` for ``task`` with a validated ``config``.

    ``num_classes`` defaults to the architecture's ``default_num_classes``. The model
    checks the type, shape and dtype of its images; ``check_inputs=True`` also refuses NaN
    and infinite pixel values (see :func:`~visionatlas.input_check`).
    """
    return get_catalog().create_model(
        task, architecture, config, num_classes, check_inputs=check_inputs
    )


def create_backbone(config: str | BackboneConfig | Mapping[str, Any], **overrides: Any) -> Backbone:
    """Build a backbone by name or :class:`~visionatlas.BackboneConfig`."""
    return get_catalog().create_backbone(config, **overrides)


def create_head(
    name: str, *, in_features: int, num_outputs: int, dropout: float = 0.0
) -> nn.Module:
    """Build a registered head by name."""
    return get_catalog().create_head(
        name, in_features=in_features, num_outputs=num_outputs, dropout=dropout
    )


def list_tasks() -> list[str]:
    """Tasks provided by the installed plugins."""
    return get_catalog().list_tasks()


def get_task(name: str) -> TaskSpec:
    """Metadata of a task."""
    return get_catalog().get_task(name)


def list_architectures(task: str | None = None, pattern: str | None = None) -> list[str]:
    """Architecture names of ``task`` (glob ``pattern``); all as ``"task/name"`` without a task."""
    return get_catalog().list_architectures(task, pattern)


def get_architecture(task: str, name: str) -> ArchitectureSpec:
    """Metadata of an architecture: display name, parameters, note, hyperparameters, plugin."""
    return get_catalog().get_architecture(task, name)


def list_backbones(pattern: str | None = None, pretrained_only: bool = False) -> list[str]:
    """Backbone names matching a glob ``pattern``; optionally only those with weights."""
    return get_catalog().list_backbones(pattern, pretrained_only)


def get_backbone(name: str) -> BackboneSpec:
    """Metadata of a backbone: channels, feature levels, parameters, weights."""
    return get_catalog().get_backbone(name)


def list_heads() -> list[str]:
    """Registered head names."""
    return get_catalog().list_heads()


def list_plugins() -> list[PluginReport]:
    """One report per discovered plugin, with what it registered and its problems."""
    return get_catalog().list_plugins()


def config_schema(task: str, architecture: str) -> dict[str, Any]:
    """JSON schema of the config an architecture accepts."""
    return get_catalog().config_class(task, architecture).model_json_schema()


def register(task: str, name: str, **metadata: Any) -> Callable[[Any], Any]:
    """Decorator registering ``fn(config, num_classes) -> nn.Module`` in the catalog."""
    return get_catalog().register(task, name, **metadata)


def register_plugin(plugin: object, *, name: str | None = None) -> PluginReport:
    """Register a plugin object (module or instance with ``@hookimpl`` functions)."""
    return get_catalog().register_plugin(plugin, name=name)
