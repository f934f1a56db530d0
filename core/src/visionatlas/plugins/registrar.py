"""The per-plugin registrar handed to the registration hooks."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from visionatlas.errors import DuplicateNameError, RejectedSpecError
from visionatlas.plugins.reports import (
    SLOW_HOOK_ENV,
    WARNING_KINDS,
    PluginReport,
    Problem,
    describe_error,
    report_if_slow,
)
from visionatlas.plugins.spec_tables import Kind, SpecTables, label
from visionatlas.plugins.validation import validate_spec
from visionatlas.specs import (
    ArchitectureSpec,
    BackboneSpec,
    CommandSpec,
    HeadSpec,
    PluginRef,
    TaskSpec,
    TrainingSpec,
)

__all__ = [
    "SLOW_HOOK_ENV",
    "WARNING_KINDS",
    "PluginReport",
    "Problem",
    "Registrar",
    "SpecTables",
    "describe_error",
    "report_if_slow",
]


class Registrar:
    """The object a registration hook receives, bound to the plugin that is registering.

    With ``strict=False`` (discovery) a malformed or duplicate registration is recorded in
    the plugin's report and skipped; with ``strict=True`` (programmatic use) it raises.
    A hook that runs longer than ``slow_after`` seconds is reported as ``slow-hook``.
    """

    def __init__(
        self,
        specs: SpecTables,
        report: PluginReport,
        *,
        strict: bool = False,
        slow_after: float = float("inf"),
    ):
        self._specs = specs
        self._report = report
        self._strict = strict
        self._slow_after = slow_after
        self._added: list[tuple[Kind, Any]] = []
        self.phase = ""

    # -- what a hook may read ----------------------------------------------------------------
    @property
    def tasks(self) -> Mapping[str, TaskSpec]:
        return self._specs.tasks

    @property
    def backbones(self) -> Mapping[str, BackboneSpec]:
        return self._specs.backbones

    @property
    def heads(self) -> Mapping[str, HeadSpec]:
        return self._specs.heads

    @property
    def architectures(self) -> Mapping[tuple[str, str], ArchitectureSpec]:
        return self._specs.architectures

    @property
    def trainings(self) -> Mapping[str, TrainingSpec]:
        return self._specs.trainings

    @property
    def commands(self) -> Mapping[str, CommandSpec]:
        return self._specs.commands

    @property
    def plugin(self) -> PluginRef:
        return self._report.ref

    # -- what a hook may add -------------------------------------------------------------------
    def add_task(self, spec: TaskSpec) -> bool:
        return self._add("task", spec)

    def add_backbone(self, spec: BackboneSpec) -> bool:
        return self._add("backbone", spec)

    def add_head(self, spec: HeadSpec) -> bool:
        return self._add("head", spec)

    def add_architecture(self, spec: ArchitectureSpec) -> bool:
        return self._add("architecture", spec)

    def add_training(self, spec: TrainingSpec) -> bool:
        return self._add("training", spec)

    def add_command(self, spec: CommandSpec) -> bool:
        return self._add("command", spec)

    def _add(self, kind: Kind, spec: Any) -> bool:
        try:
            validate_spec(kind, spec)
            stamped = dataclasses.replace(spec, provider=self._report.ref)
            key = self._specs.insert(kind, stamped)
        except DuplicateNameError as err:
            if self._strict:
                raise
            self._report.add_problem("duplicate", str(err), self.phase)
            return False
        except (TypeError, ValueError) as err:
            if self._strict:
                raise
            self._report.add_problem("malformed", str(err), self.phase)
            self._specs.reject(kind, spec, str(err), self._report.name)
            return False
        self._added.append((kind, key))
        self._report.registered.setdefault(kind, []).append(label(kind, key))
        return True

    def rollback(self) -> list[str]:
        """Remove everything added since the last :meth:`commit`; return their labels."""
        undone = []
        for kind, key in reversed(self._added):
            self._specs.remove(kind, key)
            name = label(kind, key)
            names = self._report.registered.get(kind, [])
            if name in names:
                names.remove(name)
            if not names:
                self._report.registered.pop(kind, None)
            undone.append(name)
        self._added.clear()
        return undone

    def commit(self) -> None:
        self._added.clear()

    def run(
        self, phase: str, hook: Callable[..., Any], argnames: Sequence[str] = ("registrar",)
    ) -> None:
        """Call one hook implementation with this registrar under each of its ``argnames``
        (``registrar``, or ``registry``, the name before hook API 1.1); on an exception
        undo its registrations.

        ``sys.exit()`` in a hook is a failure like any exception; Ctrl-C still stops.
        """
        self.phase = phase
        start = time.perf_counter()
        try:
            hook(**dict.fromkeys(argnames, self))
        except RejectedSpecError as err:
            # The hook depended on a spec refused earlier: keep what it registered before.
            kept = [label(kind, key) for kind, key in self._added]
            self.commit()
            self._report.add_problem(
                "dependency",
                f"the hook stopped at a lookup: {err}; kept what it registered before it"
                + (f" ({', '.join(kept)})" if kept else " (nothing)")
                + "; look specs up with .get() to skip a missing one",
                phase,
            )
            if self._strict:
                raise
        except (Exception, SystemExit) as err:  # a plugin must never take the catalog down
            undone = self.rollback()
            dropped = (
                f"; dropped what it registered in this hook: {', '.join(undone)}"
                if (undone)
                else ""
            )
            self._report.add_problem("hook-error", f"{describe_error(err)}{dropped}", phase)
            if self._strict:
                raise
        else:
            self.commit()
        finally:
            report_if_slow(self._report, phase, time.perf_counter() - start, self._slow_after)
