"""Every hook a visionatlas plugin can implement.

Plugins are modules (or objects) whose functions are marked with :data:`hookimpl`. They are
found through the ``visionatlas.plugins`` entry-point group. Registration happens in five
phases, each over all plugins before the next starts: tasks, backbones, heads,
architectures, commands, so that an architecture hook sees every backbone. A registration hook
receives a :class:`~visionatlas.plugins.registrar.Registrar` bound to the calling plugin,
as its ``registrar`` argument, and calls its ``add_*`` methods; it must not import torch at
module level, since listing the catalog never builds a model.

Hook API 1.1 renamed that argument from ``registry`` to ``registrar`` (the *model registry*
is :class:`~visionatlas.lifecycle.versioning.store.ModelRegistry`, a different thing). A hook
that still names it ``registry`` receives the same object: both names are in every
registration hook's signature, and a hook declares the one it uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from visionatlas.plugins.registrar import Registrar

PROJECT_NAME = "visionatlas"
ENTRY_POINT_GROUP = "visionatlas.plugins"
API_VERSION = 1
"""Major version of the hook API. A plugin written for another major version is refused."""
API_MINOR_VERSION = 1
"""Minor version: 1.1 names the registration hooks' argument ``registrar`` (``registry``
before, still accepted)."""

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
def visionatlas_register_tasks(registrar: Registrar, registry: Registrar) -> None:
    """Register task families with ``registrar.add_task(TaskSpec(...))``."""


@hookspec
def visionatlas_register_backbones(registrar: Registrar, registry: Registrar) -> None:
    """Register feature extractors with ``registrar.add_backbone(BackboneSpec(...))``."""


@hookspec
def visionatlas_register_heads(registrar: Registrar, registry: Registrar) -> None:
    """Register reusable heads with ``registrar.add_head(HeadSpec(...))``."""


@hookspec
def visionatlas_register_architectures(registrar: Registrar, registry: Registrar) -> None:
    """Register models with ``registrar.add_architecture(ArchitectureSpec(...))``.

    Called after every plugin registered its tasks, backbones and heads; ``registrar.backbones``
    and ``registrar.heads`` hold them all, so a plugin can derive architectures from them.
    """


@hookspec
def visionatlas_register_training(registrar: Registrar, registry: Registrar) -> None:
    """Make tasks trainable with ``registrar.add_training(TrainingSpec(...))``.

    Called after every architecture is registered. A ``TrainingSpec`` names a builder
    (usually a lazy ``"module:attribute"``) returning the task's
    :class:`~visionatlas.training.protocol.TaskTraining`: its loss, metrics, dataset readers
    and augmentations, used by a training engine such as ``visionatlas-train``; or, for a
    task that trains with its own fit rather than a per-batch loss, a
    :class:`~visionatlas.training.protocol.CustomFitTraining`. Nothing is imported until a
    run starts.
    """


@hookspec
def visionatlas_register_commands(registrar: Registrar, registry: Registrar) -> None:
    """Add subcommands to the ``visionatlas`` command line with ``registrar.add_command``.

    Called last, after every architecture is registered. A command's ``configure`` builder
    is imported only when the user runs that command. Built-in command names (``list``,
    ``show``, ...) cannot be taken.
    """
