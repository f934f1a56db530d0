"""One malformed spec costs only itself and what is built on it, each loss reported."""

from __future__ import annotations

import types

import pytest

from visionatlas import Catalog, hookimpl
from visionatlas.errors import PluginError, RejectedSpecError
from visionatlas.plugins.registrar import PluginReport, Registrar
from visionatlas.specs import (
    ArchitectureSpec,
    BackboneSpec,
    FeatureLevel,
    TaskSpec,
    TrainingSpec,
)

LEVELS = (FeatureLevel(name="feat1", channels=16, stride=4),)


def _backbone(name: str, out_channels: int) -> BackboneSpec:
    # out_channels must equal the last level's channels: 160 here is refused
    return BackboneSpec(
        name=name,
        builder="builtins:dict",
        family="demo",
        out_channels=out_channels,
        pre_logits_dim=out_channels,
        feature_levels=LEVELS,
    )


def _arch(task: str, name: str, **fields: object) -> ArchitectureSpec:
    return ArchitectureSpec(task=task, name=name, builder="builtins:dict", **fields)  # type: ignore[arg-type]


@hookimpl
def _register_backbones(registrar: Registrar) -> None:
    registrar.add_backbone(_backbone("good_bb", 16))
    registrar.add_backbone(_backbone("bad_bb", 160))


@hookimpl
def _register_fragile_architectures(registrar: Registrar) -> None:
    registrar.add_architecture(_arch("counting", "unrelated"))
    spec = registrar.backbones["bad_bb"]  # the fragile pattern: raises RejectedSpecError
    registrar.add_architecture(_arch("counting", f"on_{spec.name}"))


def _catalog(*plugins: types.SimpleNamespace) -> Catalog:
    named = [(plugin, plugin.__name__) for plugin in plugins]
    return Catalog(builtins=False, entry_points=False, plugins=named)


def _report(catalog: Catalog, name: str) -> PluginReport:
    (report,) = [r for r in catalog.list_plugins() if r.name == name]
    return report


def test_a_lookup_of_a_rejected_spec_keeps_what_the_hook_registered_before() -> None:
    plugin = types.SimpleNamespace(
        __name__="fragile",
        visionatlas_register_backbones=_register_backbones,
        visionatlas_register_architectures=_register_fragile_architectures,
    )
    catalog = _catalog(plugin)
    assert catalog.list_backbones() == ["good_bb"]
    assert catalog.list_architectures("counting") == ["unrelated"]
    report = _report(catalog, "fragile")
    assert [p.kind for p in report.errors] == ["malformed", "dependency"]
    lost = report.errors[1].message
    assert "backbone 'bad_bb' was rejected" in lost
    assert "differs from the channels of its last feature level" in lost
    assert "kept what it registered before it (counting/unrelated)" in lost
    assert report.registered["architecture"] == ["counting/unrelated"]


def test_the_rejected_lookup_error_is_a_key_error_and_get_returns_none() -> None:
    seen: dict[str, object] = {}

    @hookimpl
    def look(registrar: Registrar) -> None:
        seen["get"] = registrar.backbones.get("bad_bb")
        seen["in"] = "bad_bb" in registrar.backbones
        with pytest.raises(KeyError) as info:
            registrar.backbones["bad_bb"]
        seen["error"] = info.value
        with pytest.raises(KeyError) as never:
            registrar.backbones["never_registered"]
        seen["plain"] = never.value

    plugin = types.SimpleNamespace(
        __name__="looker",
        visionatlas_register_backbones=_register_backbones,
        visionatlas_register_architectures=look,
    )
    assert _catalog(plugin).list_backbones() == ["good_bb"]
    assert seen["get"] is None
    assert seen["in"] is False
    error = seen["error"]
    assert isinstance(error, RejectedSpecError)
    assert (error.kind, error.name, error.plugin) == ("backbone", "bad_bb", "looker")
    assert "looker" in str(error)
    assert not isinstance(seen["plain"], RejectedSpecError)


def test_specs_built_on_a_rejected_spec_are_dropped_and_reported() -> None:
    @hookimpl
    def tasks(registrar: Registrar) -> None:
        registrar.add_task(
            TaskSpec(name="sorting", display_name="Sorting", input_kind="image_batch")
        )
        registrar.add_task(
            TaskSpec(name="broken_task", display_name="Broken", input_kind="video")
        )  # refused

    @hookimpl
    def architectures(registrar: Registrar) -> None:
        registrar.add_architecture(_arch("sorting", "on_bad", backbone="bad_bb"))
        registrar.add_architecture(
            _arch("sorting", "any", backbone="good_bb", compatible_backbones=("good_bb", "bad_bb"))
        )
        registrar.add_architecture(_arch("broken_task", "orphan"))

    @hookimpl
    def training(registrar: Registrar) -> None:
        registrar.add_training(TrainingSpec(task="broken_task", builder="builtins:dict"))
        registrar.add_training(TrainingSpec(task="sorting", builder="builtins:dict"))

    provider = types.SimpleNamespace(
        __name__="provider", visionatlas_register_backbones=_register_backbones
    )
    consumer = types.SimpleNamespace(
        __name__="consumer",
        visionatlas_register_tasks=tasks,
        visionatlas_register_architectures=architectures,
        visionatlas_register_training=training,
    )
    catalog = _catalog(provider, consumer)
    assert catalog.list_architectures() == ["sorting/any"]
    assert catalog.get_architecture("sorting", "any").compatible_backbones == ("good_bb",)
    assert catalog.list_trainable_tasks() == ["sorting"]
    report = _report(catalog, "consumer")
    lost = [p.message for p in report.errors if p.kind == "dependency"]
    assert len(lost) == 4
    assert any("'sorting/on_bad' dropped: its backbone 'bad_bb' was rejected" in m for m in lost)
    assert any(
        "'broken_task/orphan' dropped: its task 'broken_task' was rejected" in m for m in lost
    )
    assert any(
        "removed from the compatible backbones of architecture 'sorting/any'" in m for m in lost
    )
    assert any("training of task 'broken_task' dropped" in m for m in lost)
    assert report.registered["architecture"] == ["sorting/any"]
    assert report.registered["training"] == ["sorting"]


def test_any_other_exception_still_drops_the_whole_hook() -> None:
    @hookimpl
    def half_way(registrar: Registrar) -> None:
        registrar.add_architecture(_arch("counting", "first"))
        raise RuntimeError("half way")

    catalog = _catalog(
        types.SimpleNamespace(__name__="raiser", visionatlas_register_architectures=half_way)
    )
    assert catalog.list_architectures() == []
    (problem,) = _report(catalog, "raiser").errors
    assert problem.kind == "hook-error"
    assert "dropped what it registered in this hook: counting/first" in problem.message


def test_register_plugin_raises_on_a_rejected_lookup() -> None:
    plugin = types.SimpleNamespace(
        __name__="fragile",
        visionatlas_register_backbones=_register_backbones,
        visionatlas_register_architectures=_register_fragile_architectures,
    )
    with pytest.raises(PluginError, match="bad_bb"):
        _catalog().register_plugin(plugin)
