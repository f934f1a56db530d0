"""The spec tables that plugins fill, keyed by name, and what was refused from them.

(The *model registry*, of saved and versioned models, is
:class:`~visionatlas.lifecycle.versioning.store.ModelRegistry`; nothing here is about it.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

from visionatlas.errors import DuplicateNameError, RejectedSpecError
from visionatlas.plugins.reports import PluginReport, logger
from visionatlas.specs import (
    ArchitectureSpec,
    BackboneSpec,
    CommandSpec,
    HeadSpec,
    TaskSpec,
    TrainingSpec,
)

__all__ = ["Kind", "SpecTables", "label"]

Kind = Literal["task", "backbone", "head", "architecture", "training", "command"]


def label(kind: Kind, key: Any) -> str:
    """``task/name`` for an architecture key, else the name."""
    return "/".join(key) if isinstance(key, tuple) else str(key)


class _Table(dict[Any, Any]):
    """A spec table whose failed lookups name a spec that was refused, and why."""

    def __init__(self, kind: Kind) -> None:
        super().__init__()
        self.kind = kind
        self.rejected: dict[Any, tuple[str, str]] = {}  # key -> (reason, plugin)

    def __missing__(self, key: Any) -> Any:
        if key in self.rejected:
            reason, plugin = self.rejected[key]
            raise RejectedSpecError(self.kind, label(self.kind, key), reason, plugin)
        raise KeyError(key)


class SpecTables:
    """Everything registered, keyed by name (architectures by ``(task, name)``).

    Specs refused as malformed are remembered with the reason: looking one up raises
    :class:`~visionatlas.errors.RejectedSpecError`, and :meth:`drop_dependents` removes what
    was registered on top of them.
    """

    def __init__(self) -> None:
        kinds: tuple[Kind, ...] = (
            "task",
            "backbone",
            "head",
            "architecture",
            "training",
            "command",
        )
        self._tables: dict[Kind, _Table] = {kind: _Table(kind) for kind in kinds}

    # read-only views
    @property
    def tasks(self) -> Mapping[str, TaskSpec]:
        return MappingProxyType(self._tables["task"])

    @property
    def backbones(self) -> Mapping[str, BackboneSpec]:
        return MappingProxyType(self._tables["backbone"])

    @property
    def heads(self) -> Mapping[str, HeadSpec]:
        return MappingProxyType(self._tables["head"])

    @property
    def architectures(self) -> Mapping[tuple[str, str], ArchitectureSpec]:
        return MappingProxyType(self._tables["architecture"])

    @property
    def trainings(self) -> Mapping[str, TrainingSpec]:
        return MappingProxyType(self._tables["training"])

    @property
    def commands(self) -> Mapping[str, CommandSpec]:
        return MappingProxyType(self._tables["command"])

    def insert(self, kind: Kind, spec: Any) -> Any:
        """Add a validated spec; raise :class:`DuplicateNameError` if its key is taken."""
        key = spec.key if kind == "architecture" else spec.name
        table = self._tables[kind]
        if key in table:
            existing = table[key].provider
            raise DuplicateNameError(kind, label(kind, key), str(existing), str(spec.provider))
        table[key] = spec
        return key

    def remove(self, kind: Kind, key: Any) -> None:
        self._tables[kind].pop(key, None)

    def reject(self, kind: Kind, spec: Any, reason: str, plugin: str) -> None:
        """Remember that ``spec`` was refused, so that lookups of its name say why."""
        name = getattr(spec, "name", None)
        if not isinstance(name, str):
            return
        key: Any = name
        if kind == "architecture":
            task = getattr(spec, "task", None)
            if not isinstance(task, str):
                return
            key = (task, name)
        self._tables[kind].rejected.setdefault(key, (reason, plugin))

    def rejection(self, kind: Kind, key: Any) -> str | None:
        """Why the spec under ``key`` was refused, if it was and nothing took the name since."""
        table = self._tables[kind]
        if key in table or key not in table.rejected:
            return None
        return table.rejected[key][0]

    def drop_dependents(self, reports: Mapping[str, PluginReport]) -> None:
        """Remove architectures and trainings built on a refused task or backbone, and
        refused names from ``compatible_backbones``; report each to the spec's plugin."""
        for key, spec in list(self._tables["architecture"].items()):
            lost = self._lost_dependency(spec.task, spec.backbone)
            report = reports.get(spec.provider.name) if spec.provider else None
            if lost is not None:
                self.remove("architecture", key)
                _forget(report, "architecture", label("architecture", key))
                _tell(report, f"architecture {label('architecture', key)!r} dropped: {lost}")
                continue
            refused = [b for b in spec.compatible_backbones if self.rejection("backbone", b)]
            if refused:
                kept = tuple(b for b in spec.compatible_backbones if b not in refused)
                self._tables["architecture"][key] = dataclasses.replace(
                    spec, compatible_backbones=kept
                )
                for name in refused:
                    _tell(
                        report,
                        f"backbone {name!r} removed from the compatible backbones of "
                        f"architecture {label('architecture', key)!r}: it was rejected "
                        f"({self.rejection('backbone', name)})",
                    )
        for task, training in list(self._tables["training"].items()):
            lost = self._lost_dependency(task, None)
            if lost is not None:
                self.remove("training", task)
                report = reports.get(training.provider.name) if training.provider else None
                _forget(report, "training", task)
                _tell(report, f"training of task {task!r} dropped: {lost}")

    def _lost_dependency(self, task: str, backbone: str | None) -> str | None:
        reason = self.rejection("task", task)
        if reason is not None:
            return f"its task {task!r} was rejected ({reason})"
        reason = self.rejection("backbone", backbone) if backbone else None
        if reason is not None:
            return f"its backbone {backbone!r} was rejected ({reason})"
        return None


def _forget(report: PluginReport | None, kind: Kind, name: str) -> None:
    if report is None:
        return
    names = report.registered.get(kind, [])
    if name in names:
        names.remove(name)
    if not names:
        report.registered.pop(kind, None)


def _tell(report: PluginReport | None, message: str) -> None:
    if report is None:
        logger.warning("visionatlas: %s", message)
    else:
        report.add_problem("dependency", message, "check")
