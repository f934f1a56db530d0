"""Every hook a visionatlas plugin can implement.

Plugins are modules (or objects) whose functions are marked with :data:`hookimpl`. They are
found through the ``visionatlas.plugins`` entry-point group. Registration happens in five
phases, each over all plugins before the next starts: tasks, backbones, heads,
architectures, commands, so that an architecture hook sees every backbone. A registration hook
receives a :class:`~visionatlas.registry.Registrar` bound to the calling plugin and calls its
``add_*`` methods; it must not import torch at module level, since listing the catalog
never builds a model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from visionatlas.registry import Registrar

PROJECT_NAME = "visionatlas"
ENTRY_POINT_GROUP = "visionatlas.plugins"
API_VERSION = 1
"""Major version of the hook API. A plugin written for another major version is refused."""

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def visionatlas_api_version() -> int:  # type: ignore[empty-body]
    """Return the major hook-API version this plugin was written for.

    Called once per plugin, before any registration hook. A plugin whose answer differs
    from :data:`API_VERSION` is not registered and is reported as incompatible. Plugins
    that do not implement this hook are assumed to be compatible.
    """


@hookspec
def visionatlas_register_tasks(registry: Registrar) -> None:
    """Register task families with ``registry.add_task(TaskSpec(...))``."""


@hookspec
def visionatlas_register_backbones(registry: Registrar) -> None:
    """Register feature extractors with ``registry.add_backbone(BackboneSpec(...))``."""


@hookspec
def visionatlas_register_heads(registry: Registrar) -> None:
    """Register reusable heads with ``registry.add_head(HeadSpec(...))``."""


@hookspec
def visionatlas_register_architectures(registry: Registrar) -> None:
    """Register models with ``registry.add_architecture(ArchitectureSpec(...))``.

    Called after every plugin registered its tasks, backbones and heads; ``registry.backbones``
    and ``registry.heads`` hold them all, so a plugin can derive architectures from them.
    """


@hookspec
def visionatlas_register_training(registry: Registrar) -> None:
    """Make tasks trainable with ``registry.add_training(TrainingSpec(...))``.

    Called after every architecture is registered. A ``TrainingSpec`` names a builder
    (usually a lazy ``"module:attribute"``) returning the task's
    :class:`~visionatlas.task_training.TaskTraining`: its loss, metrics, dataset readers
    and augmentations, used by a training engine such as ``visionatlas-train``; or, for a
    task that trains with its own fit rather than a per-batch loss, a
    :class:`~visionatlas.task_training.CustomFitTraining`. Nothing is imported until a
    run starts.
    """


@hookspec
def visionatlas_register_commands(registry: Registrar) -> None:
    """Add subcommands to the ``visionatlas`` command line with ``registry.add_command``.

    Called last, after every architecture is registered. A command's ``configure`` builder
    is imported only when the user runs that command. Built-in command names (``list``,
    ``show``, ...) cannot be taken.
    """
