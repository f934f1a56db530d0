"""Plugin discovery through real installed distributions, failure isolation, registration."""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import json
import logging
import math
import os
import re
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest
import torch

import visionatlas as va
import visionatlas_classification.plugin as classification_plugin
from visionatlas import (
    API_VERSION,
    ArchitectureSpec,
    BackboneSpec,
    Catalog,
    DuplicateNameError,
    PluginError,
    PluginRef,
    Registrar,
    TaskSpec,
    hookimpl,
    use_catalog,
)
from visionatlas.plugins.discovery import (
    DEFAULT_SLOW_HOOK_SECONDS,
    SLOW_HOOK_ENV,
    slow_hook_seconds,
)
from visionatlas.plugins.lazy import LazyCall
from visionatlas.testing import check_plugin

FIXTURE_PLUGINS = {
    "broken-import",
    "duplicate",
    "exiting-hook",
    "exiting-import",
    "incompatible",
    "malformed",
    "raising-hook",
    "slow",
    "toy",
}
SLOW_SLEEP_SECONDS = 0.05
"""How long the ``slow`` fixture plugin's task hook sleeps."""
TOY_REF = PluginRef(name="toy", distribution="visionatlas-toy", version="1.0.0")
TOY_BACKBONE_PARAMS = 25_688
CLASSIFICATION_VERSION = metadata.version("visionatlas-classification")
CLASSIFICATION = f"plugin 'classification' (visionatlas-classification {CLASSIFICATION_VERSION})"

INLINE_CLASSIFICATION = "plugin 'visionatlas_classification.plugin'"
"""The classification plugin when passed to ``Catalog(plugins=[...])`` as a module."""


def _reports(catalog: Catalog) -> dict[str, va.PluginReport]:
    return {report.name: report for report in catalog.list_plugins()}


def _kinds(report: va.PluginReport) -> list[str]:
    return sorted(problem.kind for problem in report.problems)


# -- the good third-party plugin ---------------------------------------------------------------


def test_good_plugin_is_discovered_through_its_entry_point(third_party_catalog: Catalog) -> None:
    report = _reports(third_party_catalog)["toy"]
    assert report.as_dict() == {
        "name": "toy",
        "distribution": "visionatlas-toy",
        "version": "1.0.0",
        "module": "visionatlas_toy.plugin",
        "builtin": False,
        "status": "ok",
        "registered": {
            "task": ["toy_counting"],
            "backbone": ["toy_cnn"],
            "head": ["toy_count"],
            "architecture": ["toy_counting/toy_counter"],
            "command": ["toy"],
        },
        "problems": [],
    }
    # the process-wide API sees the same catalog
    assert va.list_plugins() == third_party_catalog.list_plugins()
    assert "toy_counting" in va.list_tasks()
    assert va.list_architectures("toy_counting") == ["toy_counter"]
    task = va.get_task("toy_counting")
    assert task.provider == TOY_REF
    assert task.demo_architecture == "toy_counter"


def test_good_plugin_architecture_builds_and_runs(third_party_catalog: Catalog) -> None:
    spec = va.get_architecture("toy_counting", "toy_counter")
    assert spec.provider == TOY_REF
    assert spec.num_params == TOY_BACKBONE_PARAMS + 48 * 5 + 5
    model = va.create_model("toy_counting", "toy_counter", num_classes=4).eval()
    with torch.no_grad():
        counts = model(torch.rand(2, 3, 64, 64))
    assert counts.shape == (2, 4)
    assert bool((counts >= 0).all())  # softplus head: counts are never negative
    info = model.visionatlas_info
    assert (info.plugin, info.distribution, info.version) == ("toy", "visionatlas-toy", "1.0.0")
    assert va.count_parameters(va.create_model("toy_counting", "toy_counter")) == spec.num_params


def test_third_party_backbone_honours_the_backbone_interface(
    third_party_catalog: Catalog,
) -> None:
    spec = va.get_backbone("toy_cnn")
    assert [(lvl.name, lvl.stride) for lvl in spec.feature_levels] == [
        ("feat1", 4), ("feat2", 8), ("feat3", 16), ("feat4", 32),
    ]  # fmt: skip
    backbone = va.create_backbone("toy_cnn")
    assert va.count_parameters(backbone) == spec.num_params == TOY_BACKBONE_PARAMS
    with torch.no_grad():
        features = backbone.forward_multiscale(torch.rand(1, 3, 64, 64))
    assert {name: tuple(t.shape) for name, t in features.items()} == {
        lvl.name: (1, lvl.channels, 64 // lvl.stride, 64 // lvl.stride)
        for lvl in spec.feature_levels
    }


def test_third_party_backbone_gets_classification_for_free(third_party_catalog: Catalog) -> None:
    spec = va.get_architecture("classification", "toy_cnn")
    assert spec.provider is not None
    assert spec.provider.name == "classification"  # derived by the classification plugin
    assert spec.backbone == "toy_cnn"
    assert spec.num_params == TOY_BACKBONE_PARAMS + 48 * 1000 + 1000
    assert (
        "classification/toy_cnn"
        in _reports(third_party_catalog)["classification"].registered["architecture"]
    )
    model = va.create_model("classification", "toy_cnn", num_classes=3).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 64)).shape == (1, 3)
    assert "toy_cnn" in va.list_architectures("regression")


# -- bad plugins are isolated ------------------------------------------------------------------


def _rest_still_works(catalog: Catalog) -> None:
    reports = _reports(catalog)
    for name in ("builtin-backbones", "classification", "regression", "toy"):
        assert reports[name].status == "ok", reports[name].problems
    assert {"resnet18", "resnet50", "toy_cnn"} <= set(catalog.list_backbones())
    assert {"resnet18", "resnet50", "toy_cnn"} <= set(catalog.list_architectures("classification"))
    assert catalog.list_architectures("toy_counting") == ["toy_counter"]


def test_broken_import_is_reported_and_isolated(third_party_catalog: Catalog) -> None:
    report = _reports(third_party_catalog)["broken-import"]
    assert (report.status, report.distribution, report.version) == (
        "failed", "visionatlas-broken", "1.0.0",
    )  # fmt: skip
    assert [(p.kind, p.phase) for p in report.problems] == [("import-error", "import")]
    assert "RuntimeError: visionatlas_broken is broken on purpose" in report.problems[0].message
    assert report.registered == {}
    _rest_still_works(third_party_catalog)


def test_raising_hook_is_rolled_back_and_other_hooks_register(
    third_party_catalog: Catalog,
) -> None:
    report = _reports(third_party_catalog)["raising-hook"]
    assert report.status == "problems"
    assert [(p.kind, p.phase) for p in report.problems] == [
        ("hook-error", "visionatlas_register_backbones")
    ]
    message = report.problems[0].message
    assert "RuntimeError: backbone hook failed half-way" in message
    assert "raising_partial" in message  # says what was dropped
    # what the raising hook registered is gone, and nothing was derived from it
    assert "raising_partial" not in third_party_catalog.list_backbones()
    assert "raising_partial" not in third_party_catalog.list_architectures("classification")
    assert report.registered.get("backbone", []) == []
    # its other hooks registered normally
    assert report.registered["task"] == ["raising_task"]
    assert report.registered["architecture"] == ["raising_task/raising_survivor"]
    assert third_party_catalog.list_architectures("raising_task") == ["raising_survivor"]
    _rest_still_works(third_party_catalog)


def test_sys_exit_at_import_is_reported_and_isolated(third_party_catalog: Catalog) -> None:
    report = _reports(third_party_catalog)["exiting-import"]
    assert (report.status, report.distribution, report.version) == (
        "failed", "visionatlas-exiting", "1.0.0",
    )  # fmt: skip
    assert [(p.kind, p.phase) for p in report.problems] == [("import-error", "import")]
    assert "SystemExit: the plugin called sys.exit(3)" in report.problems[0].message
    assert report.registered == {}
    _rest_still_works(third_party_catalog)


def test_sys_exit_in_a_hook_is_rolled_back_like_an_exception(
    third_party_catalog: Catalog,
) -> None:
    report = _reports(third_party_catalog)["exiting-hook"]
    assert report.status == "problems"
    assert [(p.kind, p.phase) for p in report.problems] == [
        ("hook-error", "visionatlas_register_backbones")
    ]
    message = report.problems[0].message
    assert "SystemExit: the plugin called sys.exit()" in message
    assert "exiting_partial" in message  # says what was dropped
    assert "exiting_partial" not in third_party_catalog.list_backbones()
    assert report.registered == {
        "task": ["exiting_task"], "architecture": ["exiting_task/exiting_survivor"],
    }  # fmt: skip
    _rest_still_works(third_party_catalog)


def test_sys_exit_in_a_builder_module_is_a_plugin_error(fixture_plugins_on_path: Path) -> None:
    class ExitsOnBuild:
        @hookimpl
        def visionatlas_register_architectures(self, registrar: Registrar) -> None:
            registrar.add_architecture(
                ArchitectureSpec(
                    task="classification",
                    name="exits_on_build",
                    builder="visionatlas_exiting.at_import:build",
                )
            )

    catalog = Catalog(entry_points=False, plugins=[classification_plugin, ExitsOnBuild()])
    with pytest.raises(PluginError, match=r"SystemExit: the plugin called sys\.exit\(3\)"):
        catalog.create_model("classification", "exits_on_build")


def _slow_problems(report: va.PluginReport) -> list[va.Problem]:
    return [p for p in report.problems if p.kind == "slow-hook"]


def test_a_slow_hook_is_named_with_its_time_as_a_warning(
    fixture_plugins_on_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SLOW_HOOK_ENV, "0.02")  # the hook sleeps 0.05 s
    catalog = Catalog()
    report = _reports(catalog)["slow"]
    (problem,) = _slow_problems(report)
    assert (problem.phase, problem.severity) == ("visionatlas_register_tasks", "warning")
    took = re.search(r"the hook took (\d+\.\d+) s, over the 0\.02 s limit", problem.message)
    assert took is not None, problem.message
    assert float(took.group(1)) >= SLOW_SLEEP_SECONDS - 0.005  # printed with 2 decimals
    assert SLOW_HOOK_ENV in problem.message
    # a warning, not a failure: the plugin works and passes the plugin check
    assert report.status == "ok"
    assert report.errors == []
    assert "slow_task" in catalog.list_tasks()
    assert check_plugin("slow", catalog=catalog) is report
    assert report.as_dict()["problems"][0]["severity"] == "warning"


def test_hooks_under_the_limit_are_not_reported(third_party_catalog: Catalog) -> None:
    assert slow_hook_seconds() == DEFAULT_SLOW_HOOK_SECONDS == 2.0
    report = _reports(third_party_catalog)["slow"]
    assert (report.status, report.problems) == ("ok", [])


def test_a_slow_programmatic_plugin_still_registers(
    classification_only: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Slow:
        @hookimpl
        def visionatlas_register_architectures(self, registrar: Registrar) -> None:
            time.sleep(SLOW_SLEEP_SECONDS)
            registrar.add_architecture(
                ArchitectureSpec(task="classification", name="slow_net", builder=_tiny_builder)
            )

    monkeypatch.setenv(SLOW_HOOK_ENV, "0.02")
    report = va.register_plugin(Slow(), name="slow-object")  # raises on errors only
    assert report.status == "ok"
    assert [p.phase for p in _slow_problems(report)] == ["visionatlas_register_architectures"]
    assert "slow_net" in va.list_architectures("classification")


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", ""])
def test_the_slow_hook_limit_falls_back_to_the_default(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    monkeypatch.setenv(SLOW_HOOK_ENV, value)
    with caplog.at_level(logging.WARNING, logger="visionatlas"):
        assert slow_hook_seconds() == DEFAULT_SLOW_HOOK_SECONDS
    assert (SLOW_HOOK_ENV in caplog.text) == bool(value)
    monkeypatch.setenv(SLOW_HOOK_ENV, "inf")  # turns the warning off
    assert math.isinf(slow_hook_seconds())


def test_duplicates_never_overwrite_and_name_both_providers(
    third_party_catalog: Catalog,
) -> None:
    backbone = third_party_catalog.get_backbone("resnet50")
    assert backbone.provider is not None
    assert backbone.provider.name == "builtin-backbones"
    assert backbone.family != "impostor"
    arch = third_party_catalog.get_architecture("classification", "resnet18")
    assert arch.provider is not None
    assert arch.provider.name == "classification"
    assert isinstance(arch.builder, LazyCall)
    assert arch.default_num_classes == 1000

    report = _reports(third_party_catalog)["duplicate"]
    assert report.status == "problems"
    assert _kinds(report) == ["duplicate", "duplicate"]
    dup = "plugin 'duplicate' (visionatlas-dup 2.3.0)"
    backbone_msg, arch_msg = (p.message for p in report.problems)
    assert "backbone 'resnet50'" in backbone_msg
    assert dup in backbone_msg
    assert "plugin 'builtin-backbones' (visionatlas " in backbone_msg
    assert "architecture 'classification/resnet18'" in arch_msg
    assert dup in arch_msg
    assert CLASSIFICATION in arch_msg
    # the one name nobody else uses survives, and works
    assert report.registered == {"architecture": ["classification/dup_unique_net"]}
    unique = third_party_catalog.get_architecture("classification", "dup_unique_net")
    assert unique.provider == PluginRef(
        name="duplicate", distribution="visionatlas-dup", version="2.3.0"
    )
    model = third_party_catalog.create_model("classification", "dup_unique_net")
    assert model(torch.rand(2, 3, 8, 8)).shape == (2, 4)
    _rest_still_works(third_party_catalog)


def test_incompatible_plugin_registers_nothing(third_party_catalog: Catalog) -> None:
    report = _reports(third_party_catalog)["incompatible"]
    assert report.status == "incompatible"
    assert [(p.kind, p.phase) for p in report.problems] == [("incompatible", "api version")]
    assert "hook API 99" in report.problems[0].message
    assert f"provides API {API_VERSION}" in report.problems[0].message
    assert report.registered == {}
    assert "from_the_future" not in third_party_catalog.list_tasks()
    _rest_still_works(third_party_catalog)


def test_malformed_registrations_are_skipped_and_valid_ones_kept(
    third_party_catalog: Catalog,
) -> None:
    report = _reports(third_party_catalog)["malformed"]
    assert report.status == "problems"
    assert _kinds(report) == ["malformed", "malformed", "unknown-hook"]
    by_kind: dict[str, list[str]] = {}
    for problem in report.problems:
        by_kind.setdefault(problem.kind, []).append(problem.message)
    (unknown,) = by_kind["unknown-hook"]
    assert "'visionatlas_register_backbone'" in unknown
    assert "did you mean 'visionatlas_register_backbones'?" in unknown
    bad_name, not_a_spec = by_kind["malformed"]
    assert "'Bad Name!'" in bad_name
    assert "expects an ArchitectureSpec, got dict" in not_a_spec
    assert report.registered == {"architecture": ["classification/malformed_survivor"]}
    names = third_party_catalog.list_architectures("classification")
    assert "malformed_survivor" in names
    assert "dict_net" not in names
    _rest_still_works(third_party_catalog)


def test_reports_come_in_a_deterministic_order(
    fixture_plugins_on_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = [(r.name, r.status, r.registered) for r in Catalog().list_plugins()]
    names = [name for name, _, _ in first]
    assert names[:2] == ["builtin-backbones", "builtin-heads"]
    assert names[2:] == sorted(names[2:])  # entry points by name
    assert set(names) >= FIXTURE_PLUGINS
    # moving the distributions to the end of sys.path changes nothing
    path = [p for p in sys.path if p != str(fixture_plugins_on_path)]
    monkeypatch.setattr(sys, "path", [*path, str(fixture_plugins_on_path)])
    importlib.invalidate_caches()
    second = [(r.name, r.status, r.registered) for r in Catalog().list_plugins()]
    assert second == first


# -- environment variables ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1", "true", "YES", " on "])
def test_disable_autoload_keeps_only_builtins(
    fixture_plugins_on_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("VISIONATLAS_DISABLE_PLUGIN_AUTOLOAD", value)
    catalog = Catalog()
    assert [r.name for r in catalog.list_plugins()] == ["builtin-backbones", "builtin-heads"]
    assert {"resnet18", "resnet50"} <= set(catalog.list_backbones())
    assert "toy_cnn" not in catalog.list_backbones()
    assert "classification" not in catalog.list_tasks()
    # an explicit entry_points=True wins over the variable
    assert "toy" in _reports(Catalog(entry_points=True))


def test_autoload_stays_on_for_other_values(
    fixture_plugins_on_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISIONATLAS_DISABLE_PLUGIN_AUTOLOAD", "0")
    assert {"classification", "toy"} <= set(_reports(Catalog()))


def test_block_by_entry_point_name(
    third_party_catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISIONATLAS_BLOCKED_PLUGINS", "toy")
    report = _reports(third_party_catalog)["toy"]
    assert report.as_dict()["status"] == "blocked"
    assert (report.distribution, report.registered, report.problems) == ("visionatlas-toy", {}, [])
    assert "toy_cnn" not in va.list_backbones()
    assert "toy_counting" not in va.list_tasks()
    assert "toy_cnn" not in va.list_architectures("classification")
    assert _reports(third_party_catalog)["classification"].status == "ok"


def test_block_by_distribution_name(
    third_party_catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISIONATLAS_BLOCKED_PLUGINS", " visionatlas-broken ; visionatlas-dup,")
    reports = _reports(third_party_catalog)
    for name in ("broken-import", "duplicate"):
        assert reports[name].status == "blocked"
        assert reports[name].problems == []  # never imported, so no import error
    assert "dup_unique_net" not in va.list_architectures("classification")
    assert reports["toy"].status == "ok"


def test_blocked_argument_adds_to_the_variable(
    fixture_plugins_on_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISIONATLAS_BLOCKED_PLUGINS", "malformed")
    reports = _reports(Catalog(blocked=["visionatlas-raising"]))
    assert reports["malformed"].status == "blocked"
    assert reports["raising-hook"].status == "blocked"
    assert reports["toy"].status == "ok"


# -- programmatic registration -----------------------------------------------------------------


@pytest.fixture
def classification_only() -> Any:
    """Built-ins plus the classification plugin, process-wide; no entry points."""
    with use_catalog(Catalog(entry_points=False, plugins=[classification_plugin])) as catalog:
        yield catalog


def _tiny_builder(config: va.ModelConfig, num_classes: int) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, num_classes)
    )


def test_register_decorator_adds_a_buildable_architecture(classification_only: Catalog) -> None:
    decorated = va.register(
        "classification", "tiny_pool_linear", num_params=3 * 4 + 4, default_num_classes=4
    )(_tiny_builder)
    assert decorated is _tiny_builder
    spec = va.get_architecture("classification", "tiny_pool_linear")
    assert spec.provider is not None
    assert spec.provider.name == f"script:{__name__}"
    assert spec.num_params == 16
    model = va.create_model("classification", "tiny_pool_linear")
    assert model(torch.rand(2, 3, 8, 8)).shape == (2, 4)
    report = _reports(classification_only)[f"script:{__name__}"]
    assert report.registered == {"architecture": ["classification/tiny_pool_linear"]}


def test_register_decorator_refuses_a_taken_name(classification_only: Catalog) -> None:
    with pytest.raises(DuplicateNameError) as info:
        va.register("classification", "resnet18")(_tiny_builder)
    err = info.value
    assert err.existing == INLINE_CLASSIFICATION
    assert err.incoming == f"plugin 'script:{__name__}'"
    assert INLINE_CLASSIFICATION in str(err)
    assert f"plugin 'script:{__name__}'" in str(err)
    # the original is still what the catalog returns
    spec = va.get_architecture("classification", "resnet18")
    assert spec.provider is not None
    assert spec.provider.name == "visionatlas_classification.plugin"
    assert spec.builder != _tiny_builder


def test_register_decorator_refuses_a_malformed_name(classification_only: Catalog) -> None:
    with pytest.raises(ValueError, match="lowercase identifier"):
        va.register("classification", "Not Valid")(_tiny_builder)


def _module_plugin() -> types.ModuleType:
    module = types.ModuleType("inline_module_plugin")

    @hookimpl
    def visionatlas_register_tasks(registrar: Registrar) -> None:
        registrar.add_task(TaskSpec(name="inline_task", display_name="Inline"))

    @hookimpl
    def visionatlas_register_architectures(registrar: Registrar) -> None:
        registrar.add_architecture(
            ArchitectureSpec(
                task="inline_task", name="pool_linear", builder=_tiny_builder, default_num_classes=2
            )
        )

    module.visionatlas_register_tasks = visionatlas_register_tasks  # type: ignore[attr-defined]
    module.visionatlas_register_architectures = (  # type: ignore[attr-defined]
        visionatlas_register_architectures
    )
    return module


class _ObjectPlugin:
    """A plugin object: methods marked with ``@hookimpl``."""

    def __init__(self, arch: str, api_version: int = API_VERSION) -> None:
        self.arch = arch
        self.api_version = api_version

    @hookimpl
    def visionatlas_api_version(self) -> int:
        return self.api_version

    @hookimpl
    def visionatlas_register_architectures(self, registrar: Registrar) -> None:
        registrar.add_architecture(
            ArchitectureSpec(task="classification", name=self.arch, builder=_tiny_builder)
        )


def test_register_plugin_accepts_modules_and_objects(classification_only: Catalog) -> None:
    report = va.register_plugin(_module_plugin())
    assert (report.name, report.status) == ("inline_module_plugin", "ok")
    assert report.registered == {
        "task": ["inline_task"], "architecture": ["inline_task/pool_linear"],
    }  # fmt: skip
    assert va.create_model("inline_task", "pool_linear")(torch.rand(1, 3, 4, 4)).shape == (1, 2)

    report = va.register_plugin(_ObjectPlugin("object_net"), name="object-plugin")
    assert (report.name, report.status) == ("object-plugin", "ok")
    assert va.get_architecture("classification", "object_net").provider == PluginRef(
        name="object-plugin"
    )
    assert [r.name for r in va.list_plugins()][-2:] == ["inline_module_plugin", "object-plugin"]


def test_register_plugin_raises_plugin_error_on_problems(classification_only: Catalog) -> None:
    with pytest.raises(PluginError, match=r"\[duplicate during visionatlas_register_arch") as info:
        va.register_plugin(_ObjectPlugin("resnet18"), name="clashing")
    assert info.value.plugin == "clashing"
    assert INLINE_CLASSIFICATION in str(info.value)
    assert "clashing" not in _reports(classification_only)  # the catalog is left as it was
    assert va.get_architecture("classification", "resnet18").provider.name == (  # type: ignore[union-attr]
        "visionatlas_classification.plugin"
    )

    with pytest.raises(PluginError, match="hook API 99"):
        va.register_plugin(_ObjectPlugin("future_net", api_version=99), name="future")
    assert "future_net" not in va.list_architectures("classification")

    va.register_plugin(_ObjectPlugin("other_net"), name="clashing")
    with pytest.raises(PluginError, match="already registered"):
        va.register_plugin(_ObjectPlugin("third_net"), name="clashing")
    assert "third_net" not in va.list_architectures("classification")


def test_isolated_catalog_ignores_installed_entry_points(fixture_plugins_on_path: Path) -> None:
    catalog = Catalog(entry_points=False, plugins=[classification_plugin])
    assert [r.name for r in catalog.list_plugins()] == [
        "builtin-backbones", "builtin-heads", "visionatlas_classification.plugin",
    ]  # fmt: skip
    assert catalog.list_tasks() == ["classification"]
    assert "toy_cnn" not in catalog.list_backbones()
    assert "resnet18" in catalog.list_architectures("classification")

    bare = Catalog(builtins=False, entry_points=False, plugins=[_module_plugin()])
    assert [r.name for r in bare.list_plugins()] == ["inline_module_plugin"]
    assert bare.list_backbones() == []
    assert bare.list_architectures() == ["inline_task/pool_linear"]
    # the process-wide catalog is untouched by isolated ones
    assert "toy" in _reports(va.get_catalog())


def test_isolated_catalog_reports_problems_of_given_plugins() -> None:
    class Broken:
        @hookimpl
        def visionatlas_register_backbones(self, registrar: Registrar) -> None:
            registrar.add_backbone(
                BackboneSpec(
                    name="half", builder="x.y:z", family="f", out_channels=1, pre_logits_dim=1
                )
            )
            raise ValueError("nope")

    catalog = Catalog(entry_points=False, plugins=[Broken()])
    report = _reports(catalog)[Broken.__qualname__]  # a plugin object is named by its class
    assert _kinds(report) == ["hook-error"]
    assert "half" not in catalog.list_backbones()


# -- listing stays cheap -----------------------------------------------------------------------


def test_listing_plugins_imports_no_torch(fixture_plugins_dir: Path) -> None:
    code = (
        "import json, sys, visionatlas as va\n"
        "reports = {r.name: r.status for r in va.list_plugins()}\n"
        "archs = va.list_architectures()\n"
        "meta = va.get_architecture('toy_counting', 'toy_counter').as_dict()\n"
        "heavy = sorted(m for m in ('torch', 'torchvision') if m in sys.modules)\n"
        "print(json.dumps({'reports': reports, 'archs': archs, 'meta': meta, 'heavy': heavy}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("VISIONATLAS_")}
    env["PYTHONPATH"] = str(fixture_plugins_dir)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["heavy"] == []
    assert set(data["reports"]) >= FIXTURE_PLUGINS
    assert data["reports"]["toy"] == "ok"
    assert data["reports"]["builtin-backbones"] == "ok"
    assert {"toy_counting/toy_counter", "classification/toy_cnn"} <= set(data["archs"])
    assert data["meta"]["distribution"] == "visionatlas-toy"


def test_plugins_command_survives_sys_exit_and_names_slow_hooks(fixture_plugins_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VISIONATLAS_")}
    env["PYTHONPATH"] = str(fixture_plugins_dir)
    env[SLOW_HOOK_ENV] = "0.02"
    command = [sys.executable, "-m", "visionatlas", "plugins"]
    result = subprocess.run(
        [*command, "--json"], capture_output=True, text=True, env=env, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    reports = {r["name"]: r for r in json.loads(result.stdout)}
    assert reports["exiting-import"]["status"] == "failed"
    assert "sys.exit(3)" in reports["exiting-import"]["problems"][0]["message"]
    assert reports["exiting-hook"]["status"] == "problems"
    assert reports["exiting-hook"]["registered"]["task"] == ["exiting_task"]
    (slow,) = [p for p in reports["slow"]["problems"] if p["kind"] == "slow-hook"]
    assert (reports["slow"]["status"], slow["severity"]) == ("ok", "warning")
    assert reports["toy"]["status"] == "ok"
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(
        line.startswith("  slow: [slow-hook during visionatlas_register_tasks] the hook took ")
        for line in lines
    ), result.stdout
    assert any("exiting-import: [import-error during import] SystemExit" in x for x in lines)
