"""What discovery learns about each plugin: its problems and what it registered."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from visionatlas.specs import PluginRef

__all__ = [
    "SLOW_HOOK_ENV",
    "WARNING_KINDS",
    "PluginReport",
    "Problem",
    "ProblemKind",
    "describe_error",
    "report_if_slow",
]

logger = logging.getLogger("visionatlas")

ProblemKind = Literal[
    "import-error",
    "hook-error",
    "malformed",
    "duplicate",
    "incompatible",
    "unknown-hook",
    "slow-hook",
    "dependency",
]
Severity = Literal["error", "warning"]
SLOW_HOOK_ENV = "VISIONATLAS_SLOW_HOOK_SECONDS"
"""The environment variable that sets the slow-hook limit in seconds."""
WARNING_KINDS: frozenset[ProblemKind] = frozenset({"slow-hook"})
"""Problem kinds that are warnings: the plugin works, and its status stays ``ok``."""
PluginStatus = Literal["ok", "problems", "failed", "incompatible", "blocked"]


@dataclass(frozen=True)
class Problem:
    """One thing that went wrong with a plugin; the rest of the plugin may still work."""

    kind: ProblemKind
    message: str
    phase: str = ""

    @property
    def severity(self) -> Severity:
        return "warning" if self.kind in WARNING_KINDS else "error"

    def __str__(self) -> str:
        where = f" during {self.phase}" if self.phase else ""
        return f"[{self.kind}{where}] {self.message}"


@dataclass
class PluginReport:
    """What discovery learned about one plugin."""

    name: str
    distribution: str | None = None
    version: str | None = None
    module: str | None = None
    builtin: bool = False
    blocked: bool = False
    loaded: bool = False
    incompatible: bool = False
    registered: dict[str, list[str]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ref(self) -> PluginRef:
        return PluginRef(name=self.name, distribution=self.distribution, version=self.version)

    @property
    def errors(self) -> list[Problem]:
        """The problems that are not warnings (such as a slow hook)."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def status(self) -> PluginStatus:
        if self.blocked:
            return "blocked"
        if self.incompatible:
            return "incompatible"
        if not self.loaded:
            return "failed"
        return "problems" if self.errors else "ok"

    def add_problem(self, kind: ProblemKind, message: str, phase: str = "") -> None:
        problem = Problem(kind, message, phase)
        self.problems.append(problem)
        logger.warning("visionatlas %s: %s", self.ref, problem)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "builtin": self.builtin,
            "status": self.status,
            "registered": {k: list(v) for k, v in self.registered.items()},
            "problems": [
                {"kind": p.kind, "severity": p.severity, "phase": p.phase, "message": p.message}
                for p in self.problems
            ],
        }


def describe_error(err: BaseException) -> str:
    """``Type: message`` for a report; a ``sys.exit()`` call is named as such."""
    if isinstance(err, SystemExit):
        return (
            f"SystemExit: the plugin called sys.exit({'' if err.code is None else repr(err.code)})"
            "; a plugin must raise an exception instead"
        )
    return f"{type(err).__name__}: {err}"


def report_if_slow(report: PluginReport, phase: str, seconds: float, limit: float) -> None:
    """Add a ``slow-hook`` warning to ``report`` when a hook took more than ``limit`` s."""
    if seconds > limit:
        report.add_problem(
            "slow-hook",
            f"the hook took {seconds:.2f} s, over the {limit:g} s limit ({SLOW_HOOK_ENV}); "
            "hooks run whenever a catalog is built, so keep them to metadata and do slow work "
            "in the builders",
            phase,
        )
