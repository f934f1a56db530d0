"""Config validation, options that do not apply, and backbone compatibility."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from pydantic import ValidationError

import visionatlas as va
from visionatlas_detection.config import DetectionConfig

TASK = "object_detection"

INVALID: list[tuple[dict[str, Any], str]] = [
    ({"min_size": 900, "max_size": 600}, "min_size=900 is larger than max_size=600"),
    ({"min_size": 8}, "greater than or equal to 16"),
    ({"score_thresh": 1.5}, "less than or equal to 1"),
    ({"nms_thresh": -0.1}, "greater than or equal to 0"),
    ({"detections_per_img": 0}, "greater than or equal to 1"),
    ({"focal_alpha": 2.0}, "less than or equal to 1"),
    ({"focal_gamma": -1.0}, "greater than or equal to 0"),
    ({"fpn_channels": 8}, "greater than or equal to 16"),
    ({"image_std": (0.2, 0.0, 0.2)}, "image_std must be positive"),
    ({"dropout": 0.1}, "dropout does not apply to detectors"),
    ({"head": "classification"}, "detectors bring their own heads"),
    ({"weights": "COCO_V1"}, "set pretrained=True as well"),
    ({"backbone_weights": "IMAGENET1K_V2"}, "set pretrained=True as well"),
    (
        {"pretrained": True, "pretrained_scope": "backbone", "weights": "COCO_V1"},
        "use backbone_weights instead",
    ),
    (
        {"pretrained": True, "pretrained_scope": "full", "backbone_weights": "IMAGENET1K_V1"},
        "use weights instead",
    ),
    ({"freeze_backbone": True, "trainable_backbone_layers": 2}, "set one"),
    ({"pretrained_scope": "head"}, "'full' or 'backbone'"),
    ({"min_sise": 300}, "Extra inputs are not permitted"),
    # strings for numbers and booleans are refused, not coerced (issue 11)
    ({"min_size": "800"}, "valid integer"),
    ({"detections_per_img": 100.0}, "valid integer"),
    ({"score_thresh": "0.5"}, "valid number"),
    ({"frozen_batchnorm": "false"}, "valid boolean"),
    ({"pretrained": "no"}, "valid boolean"),
    ({"image_mean": ("0.5", 0.5, 0.5)}, "valid number"),
    ({"image_std": (float("inf"), 0.2, 0.2)}, "finite number"),
]


@pytest.mark.parametrize(("config", "message"), INVALID, ids=[str(c) for c, _ in INVALID])
def test_invalid_configs_are_refused(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", "\\(").replace(")", "\\)")):
        va.create_model(TASK, "fcos", config)


def test_defaults_are_left_to_the_architecture() -> None:
    config = DetectionConfig()
    assert config.min_size is None
    assert config.pretrained_scope is None
    assert DetectionConfig(min_size=600, max_size=1000).max_size == 1000


NOT_APPLICABLE: list[tuple[str, dict[str, Any], str]] = [
    ("fasterrcnn_resnet50", {"focal_alpha": 0.5}, "apply to FCOS and RetinaNet"),
    ("ssdlite_mobilenet_v3", {"focal_gamma": 1.0}, "apply to FCOS and RetinaNet"),
    ("ssdlite_mobilenet_v3", {"fpn_channels": 128}, "has no feature pyramid"),
    ("ssdlite_mobilenet_v3", {"max_size": 400}, "resizes every image to one min_size"),
    ("fcos", {"proposals_per_image": 100}, "two-stage detectors"),
    ("fcos_resnet50", {"fpn_channels": 100}, "GroupNorm\\(32\\)"),
    ("retinanet_resnet50_v2", {"fpn_channels": 48}, "multiple of 32"),
    ("fasterrcnn_resnet50", {"trainable_backbone_layers": 6}, "more than the 5 stages"),
    ("ssdlite_mobilenet_v3", {"trainable_backbone_layers": 7}, "more than the 6 stages"),
]


@pytest.mark.parametrize(
    ("name", "config", "message"), NOT_APPLICABLE, ids=[f"{n}-{c}" for n, c, _ in NOT_APPLICABLE]
)
def test_options_that_do_not_apply_are_refused(
    name: str, config: dict[str, Any], message: str
) -> None:
    with torch.device("meta"), pytest.raises(ValueError, match=message):
        va.create_model(TASK, name, config)


def test_fpn_channels_with_full_weights_are_refused_before_fetching(tmp_path: Any) -> None:
    missing = tmp_path / "nothing-here.pth"
    with pytest.raises(ValueError, match="fpn_channels=128 resizes every FPN") as info:
        va.create_model(TASK, "fcos_resnet50", {"pretrained": True, "fpn_channels": 128})
    assert "pretrained_scope='backbone'" in str(info.value)
    with pytest.raises(ValueError, match="cannot load"):
        va.create_model(TASK, "retinanet_resnet50", {"weights_path": missing, "fpn_channels": 512})
    with torch.device("meta"):  # without weights the torchvision recipe takes other widths
        model = va.create_model(TASK, "fasterrcnn_resnet50", {"fpn_channels": 128})
    assert model.backbone.out_channels == 128
    assert model.roi_heads.box_head.fc6.in_features == 128 * 7 * 7


def test_num_classes_counts_the_background() -> None:
    with pytest.raises(ValueError, match=r"num_classes >= 2.*background"):
        va.create_model(TASK, "fcos", num_classes=1)


@pytest.mark.parametrize("name", ["fcos", "retinanet", "fasterrcnn"])
def test_single_level_backbone_is_refused(name: str) -> None:
    with pytest.raises(va.IncompatibleBackboneError) as info:
        va.create_model(TASK, name, {"backbone": "vit_b_16"})
    message = str(info.value)
    assert "'vit_b_16' has a single feature level (stride 16), not multi-scale" in message
    assert "Accepted backbones: " in message
    assert "resnet18" in message
    assert "vit_b_32" not in message.split("Accepted backbones: ")[1]


def test_dilated_backbone_is_refused_when_levels_go_missing() -> None:
    backbone = va.BackboneConfig(model_name="mobilenet_v3_small", extra_kwargs={"dilated": True})
    with pytest.raises(va.IncompatibleBackboneError, match="offers strides \\[4, 8, 16, 16\\]"):
        va.create_model(TASK, "fcos", {"backbone": backbone})


def test_torchvision_architectures_keep_their_own_backbone() -> None:
    with pytest.raises(va.IncompatibleBackboneError, match="use the any-backbone architecture"):
        va.create_model(TASK, "fcos_resnet50", {"backbone": "resnet18"})
    with torch.device("meta"):
        model = va.create_model(TASK, "fcos_resnet50", {"backbone": "resnet50"})
    assert model.backbone.body.layer4[0].conv1.in_channels == 1024


def test_unknown_backbone_suggests_names() -> None:
    with pytest.raises(va.UnknownBackboneError, match="resnet18"):
        va.create_model(TASK, "retinanet", {"backbone": "resnet19"})


def test_any_backbone_has_no_detector_weights() -> None:
    with pytest.raises(va.PretrainedWeightsError, match="exist only for the torchvision"):
        va.create_model(TASK, "fcos", {"pretrained": True, "weights": "COCO_V1"})
    with pytest.raises(va.PretrainedWeightsError, match="no published full-detector weights"):
        va.create_model(TASK, "fcos", {"pretrained": True, "pretrained_scope": "full"})


def test_build_info_rebuilds_the_same_model() -> None:
    config = {"backbone": "resnet18", "min_size": 200, "focal_gamma": 1.5, "fpn_channels": 64}
    with torch.device("meta"):
        model = va.create_model(TASK, "retinanet", config, num_classes=5)
        info = model.visionatlas_info
        again = va.create_model(info.task, info.architecture, info.config, info.num_classes)
    assert info.config["focal_gamma"] == 1.5
    assert again.head.focal_gamma == 1.5
    assert again.backbone.out_channels == 64
    assert {k: v.shape for k, v in again.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }
