"""Pydantic configs: defaults, validation messages, extension by task plugins, schema."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from pydantic import BaseModel, ValidationError

import visionatlas as va
from visionatlas import BackboneConfig, CompositionConfig, ModelConfig
from visionatlas.config import MAX_NUM_CLASSES, validate_num_classes
from visionatlas.lifecycle.rebuild import rebuild_model


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
    integer = {"minimum": 1, "maximum": 1_000_000, "type": "integer"}
    assert integer in schema["properties"]["num_outputs"]["anyOf"]


# -- strict fields: no string booleans or numbers (issue 11) -------------------------------------
STRICT_CASES: list[tuple[type[BaseModel], dict[str, object], tuple[object, ...], str]] = [
    (ModelConfig, {"pretrained": "no"}, ("pretrained",), "valid boolean"),
    (ModelConfig, {"pretrained": "true"}, ("pretrained",), "valid boolean"),
    (ModelConfig, {"pretrained": 1}, ("pretrained",), "valid boolean"),
    (ModelConfig, {"freeze_backbone": "false"}, ("freeze_backbone",), "valid boolean"),
    (ModelConfig, {"dropout": "0.3"}, ("dropout",), "valid number"),
    (ModelConfig, {"dropout": True}, ("dropout",), "valid number"),
    (BackboneConfig, {"pretrained": "true"}, ("pretrained",), "valid boolean"),
    (BackboneConfig, {"num_classes": "10"}, ("num_classes",), "valid integer"),
    (BackboneConfig, {"num_classes": 10.0}, ("num_classes",), "valid integer"),
    (BackboneConfig, {"drop_rate": "0.1"}, ("drop_rate",), "valid number"),
    (BackboneConfig, {"drop_path_rate": "0"}, ("drop_path_rate",), "valid number"),
    (
        ModelConfig,
        {"backbone": {"model_name": "resnet18", "pretrained": "yes"}},
        ("backbone", "BackboneConfig", "pretrained"),
        "valid boolean",
    ),
    (
        CompositionConfig,
        {"backbone": {"model_name": "resnet18"}, "freeze_backbone": "yes"},
        ("freeze_backbone",),
        "valid boolean",
    ),
    (
        CompositionConfig,
        {"backbone": {"model_name": "resnet18"}, "dropout": "0.1"},
        ("dropout",),
        "valid number",
    ),
]


@pytest.mark.parametrize(
    ("cls", "data", "loc", "accepted"),
    STRICT_CASES,
    ids=[f"{cls.__name__}-{next(iter(data.items()))}" for cls, data, _, _ in STRICT_CASES],
)
def test_strings_for_booleans_and_numbers_are_refused(
    cls: type[BaseModel], data: dict[str, object], loc: tuple[object, ...], accepted: str
) -> None:
    with pytest.raises(ValidationError) as info:
        cls.model_validate(data)
    errors = [e for e in info.value.errors() if e["loc"] == loc]
    assert errors, info.value.errors()
    assert accepted in errors[0]["msg"]
    assert str(loc[-1]) in str(info.value)


def test_what_json_produces_is_still_accepted() -> None:
    text = (
        '{"backbone": {"model_name": "resnet18", "drop_rate": 0, "num_classes": 3}, '
        '"dropout": 0, "freeze_backbone": true, "weights_path": null}'
    )
    for cfg in (
        ModelConfig.model_validate_json(text),
        ModelConfig.model_validate(json.loads(text)),
    ):
        assert cfg.dropout == 0.0
        assert isinstance(cfg.dropout, float)
        assert isinstance(cfg.backbone, BackboneConfig)
        assert cfg.backbone.drop_rate == 0.0
    assert ModelConfig.model_validate({"weights_path": "w.pth"}).weights_path == Path("w.pth")


@pytest.mark.parametrize(
    ("task", "architecture"),
    [
        ("classification", "resnet18"),
        ("regression", "resnet18"),
        ("segmentation", "deeplabv3"),
        ("object_detection", "fcos"),
    ],
)
def test_every_task_config_survives_a_json_round_trip(task: str, architecture: str) -> None:
    cls = va.get_catalog().config_class(task, architecture)
    cfg = cls()
    stored = json.loads(json.dumps(cfg.model_dump(mode="json")))
    assert cls.model_validate(stored) == cfg


def test_a_stored_string_pretrained_is_refused_and_downloads_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registry entry edited to ``"pretrained": "true"`` must not turn into a download."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("VISIONATLAS_OFFLINE", "1")

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("a stored model tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    info = va.BuildInfo(
        task="classification",
        architecture="resnet18",
        config={"pretrained": "true"},
        num_classes=2,
        plugin=None,
        distribution=None,
        version=None,
    )
    # a ValidationError (a ValueError) from the strict config, or the rebuild's own guard
    with pytest.raises(ValueError, match="pretrained"):
        rebuild_model(info)
    with pytest.raises(ValidationError, match="pretrained"):
        va.get_catalog().make_config("classification", "resnet18", info.config)


# -- absurd class counts are refused before anything is allocated (issue 11) ----------------------
def test_num_classes_has_a_documented_upper_bound() -> None:
    assert MAX_NUM_CLASSES == 1_000_000
    assert validate_num_classes(MAX_NUM_CLASSES) == MAX_NUM_CLASSES
    with pytest.raises(ValidationError, match="less than or equal to 1000000") as info:
        validate_num_classes(MAX_NUM_CLASSES + 1)
    assert info.value.errors()[0]["loc"] == ("num_classes",)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: va.create_model("classification", "resnet18", num_classes=10**9), "num_classes"),
        (lambda: va.create_model("regression", "resnet18", {"num_outputs": 10**9}), "num_outputs"),
        (lambda: va.create_model("regression", "resnet18", num_classes=10**9), "num_classes"),
        (lambda: va.compose_model("resnet18", num_outputs=10**9), "num_classes"),
        (lambda: va.create_backbone("resnet18", num_classes=10**9), "num_classes"),
        (lambda: va.create_model("segmentation", "fcn", num_classes=10**9), "num_classes"),
        (lambda: va.create_model("object_detection", "fcos", num_classes=10**9), "num_classes"),
    ],
    ids=["classification", "num_outputs", "regression", "compose", "backbone", "fcn", "fcos"],
)
def test_absurd_class_counts_are_refused_before_building(
    call: Callable[[], object], field: str
) -> None:
    # on the meta device a build would succeed without memory, so only validation can fail
    with torch.device("meta"), pytest.raises(ValidationError, match=field) as info:
        call()
    assert "less than or equal to 1000000" in str(info.value)
