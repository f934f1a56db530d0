"""Pydantic configs: defaults, validation messages, extension by task plugins, schema."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

import visionatlas as va
from visionatlas import BackboneConfig, ModelConfig


def test_defaults_match_the_spec_fields() -> None:
    cfg = ModelConfig()
    assert cfg.model_dump() == {
        "backbone": None,
        "head": None,
        "pretrained": False,
        "freeze_backbone": False,
        "dropout": None,
        "weights_path": None,
    }
    bb = BackboneConfig()
    assert (bb.model_name, bb.num_classes, bb.drop_rate, bb.drop_path_rate, bb.extra_kwargs) == (
        "resnet50",
        0,
        0.0,
        0.0,
        {},
    )


def test_unknown_keys_are_rejected_with_the_key_named() -> None:
    with pytest.raises(ValidationError, match="dropuot"):
        ModelConfig.model_validate({"dropuot": 0.1})
    with pytest.raises(ValidationError, match="extra_forbidden"):
        BackboneConfig(model_name="resnet18", lr=0.1)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("field", "value"),
    [("dropout", 1.5), ("dropout", -0.1), ("freeze_backbone", "maybe")],
)
def test_bad_values_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        ModelConfig.model_validate({field: value})
    assert info.value.errors()[0]["loc"] == (field,)


def test_backbone_config_bounds() -> None:
    with pytest.raises(ValidationError, match="drop_path_rate"):
        BackboneConfig(drop_path_rate=1.0)
    with pytest.raises(ValidationError, match="num_classes"):
        BackboneConfig(num_classes=-1)


def test_conflicting_pretrained_is_rejected() -> None:
    with pytest.raises(ValidationError, match="pretrained is set both"):
        ModelConfig(backbone=BackboneConfig(model_name="resnet18"), pretrained=True)


def test_backbone_config_resolution() -> None:
    assert ModelConfig().backbone_config("resnet18").model_name == "resnet18"
    cfg = ModelConfig(backbone=BackboneConfig(model_name="resnet18", drop_path_rate=0.0))
    assert cfg.backbone_config("resnet50").model_name == "resnet18"


@pytest.mark.parametrize("bad", [0, -3, 2.5, "ten"])
def test_num_classes_below_one_or_not_int_is_rejected(bad: object) -> None:
    with pytest.raises(ValidationError, match="num_classes"):
        va.create_model("classification", "resnet18", num_classes=bad)  # type: ignore[arg-type]


def test_task_plugin_extends_the_config_without_the_core_knowing() -> None:
    cls = va.get_catalog().config_class("regression", "resnet18")
    assert issubclass(cls, ModelConfig)
    assert cls is not ModelConfig
    assert "num_outputs" in cls.model_fields
    assert "num_outputs" not in ModelConfig.model_fields
    with pytest.raises(ValidationError, match="num_outputs"):
        va.create_model("regression", "resnet18", {"num_outputs": 0})
    with pytest.raises(ValidationError, match="num_outputs"):
        va.create_model("classification", "resnet18", {"num_outputs": 2})


def test_json_schema_is_exported() -> None:
    schema = va.config_schema("regression", "resnet18")
    assert schema["additionalProperties"] is False
    assert {"backbone", "pretrained", "freeze_backbone", "dropout", "num_outputs"} <= set(
        schema["properties"]
    )
    assert {"minimum": 1, "type": "integer"} in schema["properties"]["num_outputs"]["anyOf"]
