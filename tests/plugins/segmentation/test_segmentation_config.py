"""Segmentation configs: validation, schema, backbones accepted and refused, output stride."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from pydantic import ValidationError

import visionatlas as va
from visionatlas_segmentation.config import (
    DeepLabV3Config,
    GenericSegmentationConfig,
    SegmentationConfig,
)

TASK = "segmentation"


def test_config_classes_per_architecture() -> None:
    catalog = va.get_catalog()
    assert catalog.config_class(TASK, "deeplabv3") is DeepLabV3Config
    assert catalog.config_class(TASK, "fcn") is GenericSegmentationConfig
    for name in ("fcn_resnet50", "deeplabv3_mobilenet", "lraspp_mobilenet"):
        assert catalog.config_class(TASK, name) is SegmentationConfig


def test_schema_shows_the_segmentation_options() -> None:
    properties = va.config_schema(TASK, "deeplabv3")["properties"]
    for key in (
        "aux_loss",
        "aux_loss_weight",
        "ignore_index",
        "class_weights",
        "label_smoothing",
        "pretrained_scope",
        "trainable_backbone_layers",
        "output_stride",
        "atrous_rates",
    ):
        assert properties[key]["description"], key
    assert "output_stride" not in va.config_schema(TASK, "deeplabv3_resnet50")["properties"]


def test_defaults() -> None:
    config = DeepLabV3Config()
    assert config.aux_loss is None
    assert config.aux_loss_weight == 0.5
    assert config.ignore_index == 255
    assert config.atrous_rates is None  # derived from the output stride
    assert config.backbone_trainable_stages is None
    assert SegmentationConfig(freeze_backbone=True).backbone_trainable_stages == 0


@pytest.mark.parametrize(
    ("name", "config", "message"),
    [
        ("fcn_resnet50", {"head": "classification"}, "have their own heads"),
        ("fcn_resnet50", {"pretrained_scope": "backbone"}, "set pretrained=True"),
        (
            "fcn_resnet50",
            {"freeze_backbone": False, "trainable_backbone_layers": 2},
            "trainable_backbone_layers",
        ),
        ("fcn_resnet50", {"aux_loss_weight": -1}, "aux_loss_weight"),
        ("fcn_resnet50", {"class_weights": [1.0, -0.5]}, "class_weights"),
        ("fcn_resnet50", {"label_smoothing": 1.0}, "label_smoothing"),
        ("fcn_resnet50", {"pretrained_scope": "imagenet", "pretrained": True}, "'full'"),
        ("fcn_resnet50", {"output_stride": 16}, "output_stride"),  # fixed by torchvision
        ("fcn", {"atrous_rates": [6, 12]}, "atrous_rates"),  # DeepLabV3 only
        ("deeplabv3", {"atrous_rates": []}, "atrous_rates"),
        ("deeplabv3", {"output_stride": 4}, "output_stride"),
        ("deeplabv3", {"aux_los": True}, "aux_los"),
    ],
)
def test_invalid_configs_are_refused(name: str, config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        va.create_model(TASK, name, config)


def test_torchvision_architecture_refuses_another_backbone() -> None:
    with pytest.raises(va.IncompatibleBackboneError) as info:
        va.create_model(TASK, "deeplabv3_resnet50", {"backbone": "convnext_tiny"})
    message = str(info.value)
    assert "'resnet50'" in message
    assert "'convnext_tiny'" in message
    assert "create_model('segmentation', 'deeplabv3', {'backbone': 'convnext_tiny'})" in message


def test_torchvision_architecture_accepts_its_own_backbone_only_with_weight_options() -> None:
    with torch.device("meta"):
        model = va.create_model(TASK, "fcn_resnet50", {"backbone": "resnet50"})
    assert model.backbone.layer4 is not None
    with pytest.raises(ValueError, match=r"fields \['drop_path_rate'\] cannot be set"):
        va.create_model(
            TASK,
            "fcn_resnet50",
            {"backbone": {"model_name": "resnet50", "drop_path_rate": 0.1}},
        )


def test_single_level_backbone_is_refused_with_the_accepted_ones() -> None:
    with pytest.raises(va.IncompatibleBackboneError) as info:
        va.create_model(TASK, "deeplabv3", {"backbone": "vit_b_16"})
    message = str(info.value)
    assert "'vit_b_16' has a single feature level (feat3 (stride 16))" in message
    assert "multi-scale" in message
    accepted = message.split("Accepted backbones: ")[1].split(", ")
    assert accepted == list(va.get_architecture(TASK, "deeplabv3").compatible_backbones)
    assert isinstance(info.value, ValueError)


def test_unknown_backbone() -> None:
    with pytest.raises(va.UnknownBackboneError, match="resnet5"):
        va.create_model(TASK, "fcn", {"backbone": "resnet5"})


@pytest.mark.parametrize(
    ("backbone", "output_stride", "strides"),
    [
        ("resnet50", 16, [4, 8, 16, 16]),
        ("resnet50", 8, [4, 8, 8, 8]),
        ("resnet18", 8, [4, 8, 8, 8]),  # basic blocks, dilated after building
        ("resnet34", 16, [4, 8, 16, 16]),
        ("mobilenet_v3_small", 16, [4, 8, 16, 16]),
        ("convnext_tiny", 32, [4, 8, 16, 32]),
    ],
)
def test_output_stride(backbone: str, output_stride: int, strides: list[int]) -> None:
    config = {"backbone": backbone, "output_stride": output_stride}
    with torch.device("meta"):
        model = va.create_model(TASK, "deeplabv3", config).eval()
    assert [level.stride for level in model.backbone.feature_info] == strides
    images = torch.empty(1, 3, 64, 64, device="meta")
    assert va.infer_output_shape(model, images) == (1, 21, 64, 64)


@pytest.mark.parametrize(
    ("backbone", "output_stride", "message"),
    [
        ("convnext_tiny", 16, "cannot run at output_stride=16"),
        ("mobilenet_v3_small", 8, "cannot run at output_stride=8"),
    ],
)
def test_output_stride_refused(backbone: str, output_stride: int, message: str) -> None:
    with pytest.raises(va.IncompatibleBackboneError, match=message):
        va.create_model(TASK, "fcn", {"backbone": backbone, "output_stride": output_stride})


def test_output_stride_and_dilation_kwargs_conflict() -> None:
    backbone = {
        "model_name": "resnet50",
        "extra_kwargs": {"replace_stride_with_dilation": [0, 0, 1]},
    }
    with pytest.raises(ValueError, match="set only one of them"):
        va.create_model(TASK, "fcn", {"backbone": backbone, "output_stride": 8})


def test_dropout_sets_the_head_dropout() -> None:
    with torch.device("meta"):
        model = va.create_model(TASK, "deeplabv3_resnet50", {"dropout": 0.3})
    rates = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert rates == [0.3, 0.3]  # the ASPP projection's and the auxiliary FCN head's
    with pytest.raises(ValueError, match="no dropout layer"):
        va.create_model(TASK, "lraspp_mobilenet", {"dropout": 0.1})


def _rates(model: torch.nn.Module) -> list[int]:
    return [branch[0].dilation[0] for branch in model.classifier[0].convs[1:-1]]


@pytest.mark.parametrize(
    ("config", "rates"),
    [
        ({"backbone": "resnet18", "atrous_rates": [6, 12, 18, 24]}, [6, 12, 18, 24]),
        ({"backbone": "resnet18"}, [3, 6, 9]),
        ({"backbone": "resnet50", "output_stride": 16}, [6, 12, 18]),
        ({"backbone": "resnet50", "output_stride": 8}, [12, 24, 36]),
    ],
)
def test_atrous_rates(config: dict[str, Any], rates: list[int]) -> None:
    with torch.device("meta"):
        model = va.create_model(TASK, "deeplabv3", config)
    assert _rates(model) == rates


def test_torchvision_deeplabv3_keeps_its_rates() -> None:
    with torch.device("meta"):
        model = va.create_model(TASK, "deeplabv3_mobilenet")
    assert _rates(model) == [12, 24, 36]


STRINGS_AND_NON_FINITE: list[tuple[dict[str, Any], tuple[Any, ...], str]] = [
    ({"aux_loss": "false"}, ("aux_loss",), "valid boolean"),
    ({"aux_loss_weight": "0.5"}, ("aux_loss_weight",), "valid number"),
    ({"aux_loss_weight": float("inf")}, ("aux_loss_weight",), "finite number"),
    ({"ignore_index": "255"}, ("ignore_index",), "valid integer"),
    ({"ignore_index": 255.0}, ("ignore_index",), "valid integer"),
    ({"class_weights": ["1", 2.0]}, ("class_weights", 0), "valid number"),
    ({"class_weights": [1.0, float("nan")]}, ("class_weights", 1), "finite number"),
    ({"label_smoothing": "0.1"}, ("label_smoothing",), "valid number"),
    ({"trainable_backbone_layers": "2"}, ("trainable_backbone_layers",), "valid integer"),
    ({"atrous_rates": [6.0, 12, 18]}, ("atrous_rates", 0), "valid integer"),
]


@pytest.mark.parametrize(
    ("config", "loc", "accepted"),
    STRINGS_AND_NON_FINITE,
    ids=[str(c) for c, _, _ in STRINGS_AND_NON_FINITE],
)
def test_strings_and_non_finite_numbers_are_refused(
    config: dict[str, Any], loc: tuple[Any, ...], accepted: str
) -> None:
    with pytest.raises(ValidationError) as info:
        va.get_catalog().make_config(TASK, "deeplabv3", config)
    (error,) = info.value.errors()
    assert error["loc"] == loc
    assert accepted in error["msg"]


def test_json_numbers_are_accepted() -> None:
    config = va.get_catalog().make_config(
        TASK, "deeplabv3", {"aux_loss_weight": 1, "class_weights": [1, 0.5], "atrous_rates": [3]}
    )
    assert isinstance(config, DeepLabV3Config)
    assert config.aux_loss_weight == 1.0
    assert config.class_weights == (1.0, 0.5)
