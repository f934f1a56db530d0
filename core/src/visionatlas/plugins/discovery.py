"""Build the plugin manager: hook specs, built-in plugins, entry points, isolation."""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import logging
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import ModuleType

import pluggy

from visionatlas.errors import close_matches
from visionatlas.plugins import hookspecs
from visionatlas.plugins.registrar import (
    SLOW_HOOK_ENV,
    PluginReport,
    Registrar,
    SpecTables,
    describe_error,
    report_if_slow,
)

__all__ = [
    "AUTOLOAD_ENV",
    "BLOCKED_ENV",
    "BUILTIN_PLUGINS",
    "DEFAULT_SLOW_HOOK_SECONDS",
    "PHASES",
    "SLOW_HOOK_ENV",
    "LoadedPlugins",
    "load_plugins",
    "slow_hook_seconds",
]

AUTOLOAD_ENV = "VISIONATLAS_DISABLE_PLUGIN_AUTOLOAD"
BLOCKED_ENV = "VISIONATLAS_BLOCKED_PLUGINS"
DEFAULT_SLOW_HOOK_SECONDS = 2.0
"""A hook that runs longer is named in its plugin's report (a ``slow-hook`` warning)."""
BUILTIN_PLUGINS: tuple[tuple[str, str], ...] = (
    ("builtin-backbones", "visionatlas.models.backbones.builtin"),
    ("builtin-heads", "visionatlas.models.heads.builtin"),
)
PHASES: tuple[str, ...] = (
    "visionatlas_register_tasks",
    "visionatlas_register_backbones",
    "visionatlas_register_heads",
    "visionatlas_register_architectures",
    "visionatlas_register_training",
    "visionatlas_register_commands",
)
_TRUE = {"1", "true", "yes", "on"}


def autoload_disabled() -> bool:
    return os.environ.get(AUTOLOAD_ENV, "").strip().lower() in _TRUE


def blocked_from_env() -> set[str]:
    raw = os.environ.get(BLOCKED_ENV, "")
    return {part.strip() for part in raw.replace(";", ",").split(",") if part.strip()}


def slow_hook_seconds() -> float:
    """The slow-hook limit: :data:`SLOW_HOOK_ENV` (seconds, > 0; ``inf`` turns it off)."""
    raw = os.environ.get(SLOW_HOOK_ENV, "").strip()
    if not raw:
        return DEFAULT_SLOW_HOOK_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not value > 0:  # also NaN
        logging.getLogger("visionatlas").warning(
            "%s=%r is not a number of seconds > 0 (or inf); using %g",
            SLOW_HOOK_ENV,
            raw,
            DEFAULT_SLOW_HOOK_SECONDS,
        )
        return DEFAULT_SLOW_HOOK_SECONDS
    return value


@dataclass
class LoadedPlugins:
    """The plugin manager, the spec tables it filled, and one report per plugin."""

    manager: pluggy.PluginManager
    specs: SpecTables
    reports: dict[str, PluginReport] = field(default_factory=dict)
    order: list[object] = field(default_factory=list)
    slow_after: float = DEFAULT_SLOW_HOOK_SECONDS

    def add(self, plugin: object, report: PluginReport, *, strict: bool = False) -> bool:
        """Register ``plugin`` with the manager and check it; do not run its hooks yet."""
        if report.name in self.reports:  # never let a second plugin replace a report
            base, n = report.name, 2
            while f"{base}#{n}" in self.reports:
                n += 1
            report.name = f"{base}#{n}"
        self.reports[report.name] = report
        try:
            self.manager.register(plugin, name=report.name)
        except (ValueError, pluggy.PluginValidationError) as err:
            report.add_problem("malformed", f"cannot register plugin: {err}", "load")
            if strict:
                raise
            return False
        report.loaded = True
        self.order.append(plugin)
        _check_unknown_hooks(self.manager, plugin, report)
        if not _check_api_version(self.manager, plugin, report, self.slow_after):
            self.manager.unregister(plugin)
            self.order.remove(plugin)
            report.loaded = False
            return False
        return True

    def run_phases(self, plugins: Sequence[object], *, strict: bool = False) -> None:
        """Run the registration hooks of ``plugins``, phase by phase, each isolated."""
        rank = {id(p): i for i, p in enumerate(plugins)}
        for phase in PHASES:
            caller = getattr(self.manager.hook, phase)
            impls = [i for i in caller.get_hookimpls() if id(i.plugin) in rank]
            impls.sort(key=lambda impl: rank[id(impl.plugin)])
            for impl in impls:
                report = self.reports[impl.plugin_name]
                registrar = Registrar(self.specs, report, strict=strict, slow_after=self.slow_after)
                registrar.run(phase, impl.function, impl.argnames)
        self.specs.drop_dependents(self.reports)


def _check_unknown_hooks(
    manager: pluggy.PluginManager, plugin: object, report: PluginReport
) -> None:
    known = {name for name in dir(hookspecs) if name.startswith("visionatlas_")}
    for caller_name in dir(manager.hook):
        if not caller_name.startswith("visionatlas_") or caller_name in known:
            continue
        caller = getattr(manager.hook, caller_name)
        if any(impl.plugin is plugin for impl in caller.get_hookimpls()):
            hint = close_matches(caller_name, known, n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            report.add_problem(
                "unknown-hook",
                f"implements {caller_name!r}, which is not a visionatlas hook{suggestion}",
                "load",
            )


def _check_api_version(
    manager: pluggy.PluginManager, plugin: object, report: PluginReport, slow_after: float
) -> bool:
    for impl in manager.hook.visionatlas_api_version.get_hookimpls():
        if impl.plugin is not plugin:
            continue
        start = time.perf_counter()
        try:
            declared = impl.function()
        except (Exception, SystemExit) as err:
            report.add_problem("hook-error", describe_error(err), "api version")
            report.incompatible = True
            return False
        finally:
            report_if_slow(report, "api version", time.perf_counter() - start, slow_after)
        if declared != hookspecs.API_VERSION:
            report.add_problem(
                "incompatible",
                f"written for visionatlas hook API {declared!r}, but this core "
                f"(visionatlas {_core_version()}) provides API {hookspecs.API_VERSION}; "
                "install a release of the plugin made for this API",
                "api version",
            )
            report.incompatible = True
            return False
    return True


def _core_version() -> str:
    try:
        return metadata.version("visionatlas")
    except metadata.PackageNotFoundError:
        return "unknown"


def _entry_points() -> list[metadata.EntryPoint]:
    """Entry points of the plugin group, deduplicated and in a deterministic order."""
    seen: dict[str, metadata.EntryPoint] = {}
    duplicates: list[metadata.EntryPoint] = []
    for ep in metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP):
        if ep.name in seen:
            if _dist_name(seen[ep.name]) != _dist_name(ep):
                duplicates.append(ep)
            continue
        seen[ep.name] = ep
    ordered = sorted(seen.values(), key=lambda ep: (ep.name, _dist_name(ep) or ""))
    return ordered + sorted(duplicates, key=lambda ep: (ep.name, _dist_name(ep) or ""))


def _dist_name(ep: metadata.EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None else None


def _report_for(ep: metadata.EntryPoint) -> PluginReport:
    dist = getattr(ep, "dist", None)
    return PluginReport(
        name=ep.name,
        distribution=dist.metadata["Name"] if dist is not None else None,
        version=dist.version if dist is not None else None,
        module=ep.value,
    )


def load_plugins(
    *,
    builtins: bool = True,
    entry_points: bool | None = None,
    blocked: Iterable[str] | None = None,
    plugins: Iterable[object | tuple[object, str]] = (),
) -> LoadedPlugins:
    """Discover and register plugins, isolating every failure in the plugin's report.

    ``entry_points=None`` follows the :data:`AUTOLOAD_ENV` environment variable; ``blocked``
    (entry-point or distribution names) adds to :data:`BLOCKED_ENV`. ``plugins`` are
    objects registered after the entry points, or ``(object, name)`` pairs. An exception or
    ``sys.exit()`` in a plugin's import or hook is a failure in its report; a hook slower
    than :func:`slow_hook_seconds` is a ``slow-hook`` warning.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    loaded = LoadedPlugins(manager=manager, specs=SpecTables(), slow_after=slow_hook_seconds())
    blocked_names = blocked_from_env() | set(blocked or ())
    if entry_points is None:
        entry_points = not autoload_disabled()

    if builtins:
        for name, module_name in BUILTIN_PLUGINS:
            report = PluginReport(
                name=name,
                distribution="visionatlas",
                version=_core_version(),
                module=module_name,
                builtin=True,
            )
            try:
                module = importlib.import_module(module_name)
            except (Exception, SystemExit) as err:  # a broken built-in is reported like any
                loaded.reports[name] = report
                report.add_problem("import-error", describe_error(err), "import")
                continue
            loaded.add(module, report)

    if entry_points:
        taken = set(loaded.reports)
        for ep in _entry_points():
            report = _report_for(ep)
            if ep.name in taken:
                report.name = f"{ep.name}@{report.distribution}"
                report.add_problem(
                    "duplicate",
                    f"plugin name {ep.name!r} is already used by "
                    f"{loaded.reports[ep.name].ref}; this one is skipped",
                    "load",
                )
                loaded.reports[report.name] = report
                continue
            taken.add(ep.name)
            if ep.name in blocked_names or (report.distribution in blocked_names):
                report.blocked = True
                loaded.reports[report.name] = report
                manager.set_blocked(ep.name)
                continue
            try:
                plugin = ep.load()
            except (Exception, SystemExit) as err:  # isolate: sys.exit() at import too
                loaded.reports[report.name] = report
                report.add_problem("import-error", describe_error(err), "import")
                continue
            loaded.add(plugin, report)

    for item in plugins:
        plugin, name = item if isinstance(item, tuple) else (item, None)
        loaded.add(plugin, programmatic_report(plugin, name))

    loaded.run_phases(loaded.order)
    return loaded


def programmatic_report(plugin: object, name: str | None = None) -> PluginReport:
    """A report for a plugin object registered from code rather than an entry point."""
    module = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__
    label = name or (
        plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__qualname__
    )
    return PluginReport(name=label, module=module)
