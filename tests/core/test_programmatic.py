"""Programmatic registration rebuilds the catalog so that plugins compose as discovered ones."""

from __future__ import annotations

import pytest

import visionatlas as va
from visionatlas.specs import BackboneSpec, FeatureLevel


class _BackbonePlugin:
    """Registers a copy of resnet18 under a new name; classification should derive from it."""

    @va.hookimpl
    def visionatlas_register_backbones(self, registrar: va.Registrar) -> None:
        original = registrar.backbones["resnet18"]
        registrar.add_backbone(
            BackboneSpec(
                name="my_resnet18",
                builder=original.builder,
                family="resnet",
                out_channels=original.out_channels,
                pre_logits_dim=original.pre_logits_dim,
                num_params=original.num_params,
                feature_levels=original.feature_levels,
            )
        )


def test_a_registered_backbone_gets_derived_architectures() -> None:
    @va.register("scripted", "tiny")
    def build(config: va.ModelConfig, num_classes: int) -> object:
        raise NotImplementedError

    va.register_plugin(_BackbonePlugin(), name="my-backbones")
    assert "my_resnet18" in va.list_architectures("classification")
    assert "my_resnet18" in va.list_architectures("regression")
    # registrations made from scripts survive the rebuild
    assert va.list_architectures("scripted") == ["tiny"]
    assert va.get_backbone("my_resnet18").feature_levels[0] == FeatureLevel(
        name="feat1", channels=64, stride=4
    )


def test_a_script_registration_clashing_with_a_new_plugin_keeps_the_catalog() -> None:
    @va.register("classification", "my_resnet18")
    def build(config: va.ModelConfig, num_classes: int) -> object:
        raise NotImplementedError

    with pytest.raises(va.PluginError, match="my_resnet18"):
        va.register_plugin(_BackbonePlugin(), name="my-backbones")
    assert "my_resnet18" not in va.list_backbones()
    assert va.get_architecture("classification", "my_resnet18").builder is build


def test_a_builder_that_returns_no_module_is_reported() -> None:
    @va.register("scripted", "not_a_module")
    def build(config: va.ModelConfig, num_classes: int) -> object:
        return {"weights": num_classes}

    with pytest.raises(va.PluginError, match=r"returned a dict, not a torch\.nn\.Module"):
        va.create_model("scripted", "not_a_module")


class _MismatchedBackbone:
    @va.hookimpl
    def visionatlas_register_backbones(self, registrar: va.Registrar) -> None:
        registrar.add_backbone(
            BackboneSpec(
                name="mismatched",
                builder="x.y:z",
                family="toy",
                out_channels=64,
                pre_logits_dim=64,
                feature_levels=(FeatureLevel(name="feat4", channels=32, stride=32),),
            )
        )


def test_out_channels_must_be_the_last_level_channels() -> None:
    with pytest.raises(
        va.PluginError, match=r"out_channels=64 differs .* last feature level \(32\)"
    ):
        va.register_plugin(_MismatchedBackbone(), name="mismatched")
    assert "mismatched" not in va.list_backbones()
