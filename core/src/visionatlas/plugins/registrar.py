"""The spec tables that plugins fill, and the per-plugin registrar handed to their hooks.

(The *model registry*, of saved and versioned models, is
:class:`~visionatlas.lifecycle.versioning.store.ModelRegistry`; nothing here is about it.)
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeVar

from visionatlas.errors import DuplicateNameError, RejectedSpecError
from visionatlas.specs import (
    INPUT_KINDS,
    NAME_PATTERN,
    REFERENCE_PATTERN,
    ArchitectureSpec,
    BackboneSpec,
    CommandSpec,
    FeatureLevel,
    HeadSpec,
    PluginRef,
    TaskSpec,
    TrainingSpec,
    WeightsSpec,
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

logger = logging.getLogger("visionatlas")

Kind = Literal["task", "backbone", "head", "architecture", "training", "command"]
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
SpecT = TypeVar("SpecT", TaskSpec, BackboneSpec, HeadSpec, ArchitectureSpec, CommandSpec)


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


def _label(kind: Kind, key: Any) -> str:
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
            raise RejectedSpecError(self.kind, _label(self.kind, key), reason, plugin)
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
            raise DuplicateNameError(kind, _label(kind, key), str(existing), str(spec.provider))
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
                _forget(report, "architecture", _label("architecture", key))
                _tell(report, f"architecture {_label('architecture', key)!r} dropped: {lost}")
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
                        f"architecture {_label('architecture', key)!r}: it was rejected "
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


def _forget(report: PluginReport | None, kind: Kind, label: str) -> None:
    if report is None:
        return
    names = report.registered.get(kind, [])
    if label in names:
        names.remove(label)
    if not names:
        report.registered.pop(kind, None)


def _tell(report: PluginReport | None, message: str) -> None:
    if report is None:
        logger.warning("visionatlas: %s", message)
    else:
        report.add_problem("dependency", message, "check")


def _check_name(value: Any, what: str) -> None:
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise ValueError(
            f"{what} must be a lowercase identifier such as 'resnet50' "
            f"(letters, digits, '_', '-', '.'), got {value!r}"
        )


def _check_builder(value: Any, what: str) -> None:
    if callable(value):
        return
    if isinstance(value, str) and REFERENCE_PATTERN.match(value):
        return
    raise ValueError(f"{what} must be a callable or a 'module:attribute' string, got {value!r}")


def _check_count(value: Any, what: str, *, minimum: int = 0, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be an int >= {minimum}, got {value!r}")


_URL_SCHEMES = ("https://", "http://", "file://")
_HEX = frozenset("0123456789abcdef")


def _check_weights(value: Any, what: str) -> None:
    """``None``, a torchvision ``"Enum.MEMBER"`` reference or a well-formed WeightsSpec."""
    if value is None:
        return
    if isinstance(value, str):
        enum_name, dot, member = value.partition(".")
        if dot and enum_name and member:
            return
        raise ValueError(
            f"{what} must be a torchvision weights reference such as "
            f"'ResNet50_Weights.IMAGENET1K_V2', a WeightsSpec or None, got {value!r}"
        )
    if not isinstance(value, WeightsSpec):
        raise TypeError(f"{what} must be a str, a WeightsSpec or None, got {type(value).__name__}")
    if not isinstance(value.url, str) or not value.url.startswith(_URL_SCHEMES):
        raise ValueError(f"{what}.url must start with {', '.join(_URL_SCHEMES)}, got {value.url!r}")
    file = value.file
    if not file or "/" in file or "\\" in file or file in {".", ".."}:
        raise ValueError(
            f"{what} needs a plain file name (file_name, or a URL whose path ends in one), "
            f"got {file!r}"
        )
    digest = value.sha256
    if digest is not None and (
        not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= _HEX
    ):
        raise ValueError(f"{what}.sha256 must be 64 lowercase hex digits, got {digest!r}")
    if not isinstance(value.key_map, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.key_map.items()
    ):
        raise ValueError(f"{what}.key_map must map key prefixes (str) to new prefixes (str)")
    if value.classifier_prefix is not None and not isinstance(value.classifier_prefix, str):
        raise ValueError(f"{what}.classifier_prefix must be a str or None")
    if not isinstance(value.name, str) or not value.name:
        raise ValueError(f"{what}.name must be a non-empty str, e.g. 'IMAGENET1K'")


RESERVED_COMMANDS = frozenset(
    {"list", "show", "backbones", "plugins", "demo", "registry", "export", "help"}
)
"""Subcommand names of the core command line, which plugins cannot take."""


def validate_spec(kind: Kind, spec: Any) -> None:  # spec: one of the five spec types
    """Raise ``TypeError``/``ValueError`` describing what is malformed in ``spec``."""
    expected: dict[Kind, type[Any]] = {
        "task": TaskSpec,
        "backbone": BackboneSpec,
        "head": HeadSpec,
        "architecture": ArchitectureSpec,
        "training": TrainingSpec,
        "command": CommandSpec,
    }
    cls = expected[kind]
    if not isinstance(spec, cls):  # a plugin may pass anything
        raise TypeError(f"add_{kind} expects a {cls.__name__}, got {type(spec).__name__}")
    _check_name(spec.name, f"{kind} name")
    if kind == "task":
        if spec.example_inputs is not None:
            _check_builder(spec.example_inputs, f"task {spec.name!r} example_inputs")
        if spec.input_kind is not None and spec.input_kind not in INPUT_KINDS:
            raise ValueError(
                f"task {spec.name!r} input_kind={spec.input_kind!r}; accepted: None or "
                f"{', '.join(map(repr, INPUT_KINDS))}"
            )
        return
    if kind == "training":
        _check_builder(spec.builder, f"training of task {spec.task!r} builder")
        return
    if kind == "command":
        _check_builder(spec.configure, f"command {spec.name!r} configure")
        if spec.name in RESERVED_COMMANDS:
            raise ValueError(
                f"command name {spec.name!r} is a built-in visionatlas command; "
                f"reserved: {', '.join(sorted(RESERVED_COMMANDS))}"
            )
        return
    _check_builder(spec.builder, f"{kind} {spec.name!r} builder")
    if kind == "backbone":
        _check_count(spec.out_channels, f"backbone {spec.name!r} out_channels", minimum=1)
        _check_count(spec.pre_logits_dim, f"backbone {spec.name!r} pre_logits_dim", minimum=1)
        _check_count(spec.num_params, f"backbone {spec.name!r} num_params", optional=True)
        if not all(isinstance(level, FeatureLevel) for level in spec.feature_levels):
            raise TypeError(f"backbone {spec.name!r} feature_levels must be FeatureLevel objects")
        strides = [level.stride for level in spec.feature_levels]
        if strides != sorted(set(strides)):
            raise ValueError(
                f"backbone {spec.name!r} feature_levels must have increasing strides, got {strides}"
            )
        _check_weights(spec.pretrained_weights, f"backbone {spec.name!r} pretrained_weights")
        last = spec.feature_levels[-1].channels if spec.feature_levels else spec.out_channels
        if last != spec.out_channels:
            raise ValueError(
                f"backbone {spec.name!r} out_channels={spec.out_channels} differs from the "
                f"channels of its last feature level ({last}); they must be equal"
            )
    elif kind == "architecture":
        _check_name(spec.task, f"architecture {spec.name!r} task")
        _check_count(spec.num_params, f"architecture {spec.name!r} num_params", optional=True)
        if (
            isinstance(spec.default_num_classes, bool)
            or not isinstance(spec.default_num_classes, int)
            or spec.default_num_classes < 1
        ):
            raise ValueError(
                f"architecture {spec.name!r} default_num_classes must be an int >= 1, "
                f"got {spec.default_num_classes!r}"
            )
        if spec.config_class is not None:
            _check_builder(spec.config_class, f"architecture {spec.name!r} config_class")


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
        self._report.registered.setdefault(kind, []).append(_label(kind, key))
        return True

    def rollback(self) -> list[str]:
        """Remove everything added since the last :meth:`commit`; return their labels."""
        undone = []
        for kind, key in reversed(self._added):
            self._specs.remove(kind, key)
            label = _label(kind, key)
            names = self._report.registered.get(kind, [])
            if label in names:
                names.remove(label)
            if not names:
                self._report.registered.pop(kind, None)
            undone.append(label)
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
            kept = [_label(kind, key) for kind, key in self._added]
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
