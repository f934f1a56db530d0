"""Hook API 1.1: the registration hooks' argument is ``registrar``; ``registry`` still works."""

from __future__ import annotations

import types

from visionatlas import Catalog, Registrar, TaskSpec, hookimpl
from visionatlas.plugins.hookspecs import API_MINOR_VERSION


def _plugin(name: str, hook: object) -> types.SimpleNamespace:
    return types.SimpleNamespace(__name__=name, visionatlas_register_tasks=hook)


def test_both_argument_names_receive_the_registrar() -> None:
    seen: dict[str, object] = {}

    @hookimpl
    def current(registrar: Registrar) -> None:
        seen["current"] = registrar
        registrar.add_task(TaskSpec(name="new_style", display_name="New"))

    @hookimpl
    def before_1_1(registry: Registrar) -> None:
        seen["before"] = registry
        registry.add_task(TaskSpec(name="old_style", display_name="Old"))

    catalog = Catalog(
        builtins=False,
        entry_points=False,
        plugins=[_plugin("new", current), _plugin("old", before_1_1)],
    )
    assert {"new_style", "old_style"} <= set(catalog.list_tasks())
    assert isinstance(seen["current"], Registrar)
    assert isinstance(seen["before"], Registrar)
    assert all(not report.errors for report in catalog.list_plugins())
    assert API_MINOR_VERSION >= 1


def test_another_argument_name_is_refused_and_reported() -> None:
    @hookimpl
    def misnamed(reg: Registrar) -> None:
        reg.add_task(TaskSpec(name="never", display_name="Never"))

    catalog = Catalog(builtins=False, entry_points=False, plugins=[_plugin("bad", misnamed)])
    assert "never" not in catalog.list_tasks()
    (report,) = catalog.list_plugins()
    assert report.errors
    assert "reg" in " ".join(str(problem) for problem in report.problems)
