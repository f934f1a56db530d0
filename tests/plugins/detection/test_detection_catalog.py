"""Discovery, catalog metadata, and equality of the builds with torchvision's builders."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torchvision.models import detection as tv_detection

import visionatlas as va
from visionatlas.testing import check_plugin

TASK = "object_detection"
TORCHVISION = {
    "fasterrcnn_resnet50": tv_detection.fasterrcnn_resnet50_fpn,
    "fasterrcnn_resnet50_v2": tv_detection.fasterrcnn_resnet50_fpn_v2,
    "fcos_resnet50": tv_detection.fcos_resnet50_fpn,
    "retinanet_resnet50": tv_detection.retinanet_resnet50_fpn,
    "retinanet_resnet50_v2": tv_detection.retinanet_resnet50_fpn_v2,
    "ssdlite_mobilenet_v3": tv_detection.ssdlite320_mobilenet_v3_large,
}
ANY_BACKBONE = ["fasterrcnn", "fcos", "retinanet"]
ALL = sorted([*TORCHVISION, *ANY_BACKBONE])


def test_entry_point_plugin_registers_every_architecture() -> None:
    report = check_plugin("detection")
    assert report.distribution == "visionatlas-detection"
    assert va.list_architectures(TASK) == ALL
    task = va.get_task(TASK)
    assert task.demo_architecture == "ssdlite_mobilenet_v3"
    assert task.provider is not None
    assert task.provider.name == "detection"


def test_listing_does_not_import_torch() -> None:
    code = (
        "import sys, visionatlas as va; va.list_architectures('object_detection'); "
        "va.get_architecture('object_detection', 'fcos').compatible_backbones; "
        "print(sorted(m for m in ('torch', 'torchvision', 'pydantic') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("name", ALL)
def test_parameter_count_metadata_matches_construction(name: str) -> None:
    spec = va.get_architecture(TASK, name)
    assert spec.default_num_classes == 91
    with torch.device("meta"):
        model = va.create_model(TASK, name)
    assert va.count_parameters(model, trainable_only=False) == spec.num_params
    assert model.num_classes == 91


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_same_modules_as_the_torchvision_builder(name: str) -> None:
    """Keys, shapes and trainable flags equal torchvision's (default: no weights)."""
    with torch.device("meta"):
        ours = va.create_model(TASK, name)
        reference = TORCHVISION[name](weights=None, weights_backbone=None)
    assert isinstance(ours, type(reference))
    shapes = {k: v.shape for k, v in ours.state_dict().items()}
    assert shapes == {k: v.shape for k, v in reference.state_dict().items()}
    trainable = {k for k, p in ours.named_parameters() if p.requires_grad}
    assert trainable == {k for k, p in reference.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("name", ANY_BACKBONE)
def test_any_backbone_default_is_the_torchvision_layout(name: str) -> None:
    """On the default ResNet-50 the generic detector has torchvision's state-dict layout."""
    reference = {"fasterrcnn": "fasterrcnn_resnet50", "fcos": "fcos_resnet50"}
    with torch.device("meta"):
        ours = va.create_model(TASK, name)
        spec = va.create_model(TASK, reference.get(name, "retinanet_resnet50"))
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in spec.state_dict().items()
    }


def test_metadata() -> None:
    spec = va.get_architecture(TASK, "fasterrcnn_resnet50")
    assert spec.display_name == "Faster R-CNN ResNet-50 FPN"
    assert spec.pretrained_available
    assert spec.backbone == "resnet50"
    hyper = spec.hyperparameters
    assert (hyper.optimizer, hyper.batch_size, hyper.epochs) == ("sgd", 4, 26)
    ssd = va.get_architecture(TASK, "ssdlite_mobilenet_v3")
    assert ssd.backbone == "mobilenet_v3_large"
    assert ssd.hyperparameters.input_size == (320, 320)


@pytest.mark.parametrize(
    ("name", "strides"),
    [("fasterrcnn", {4, 8, 16, 32}), ("fcos", {8, 16, 32}), ("retinanet", {8, 16, 32})],
)
def test_compatible_backbones_have_levels_at_the_pyramid_strides(
    name: str, strides: set[int]
) -> None:
    accepted = va.get_architecture(TASK, name).compatible_backbones
    expected = {
        b.name
        for b in va.get_catalog().backbones()
        if strides <= {level.stride for level in b.feature_levels}
    }
    assert set(accepted) == expected
    torchvision_multiscale = {
        b.name for b in va.get_catalog().backbones() if b.multiscale and "/" not in b.name
    }
    assert torchvision_multiscale <= set(accepted)
    assert {"resnet18", "efficientnet_b3", "convnext_tiny", "swin_t"} <= set(accepted)
    assert not any(b.startswith("vit_") for b in accepted)


def test_config_schema_lists_the_detection_options() -> None:
    schema = va.config_schema(TASK, "fcos")
    for option in (
        "min_size",
        "max_size",
        "score_thresh",
        "nms_thresh",
        "detections_per_img",
        "focal_alpha",
        "focal_gamma",
        "fpn_channels",
        "trainable_backbone_layers",
        "pretrained_scope",
        "weights",
        "backbone_weights",
    ):
        assert option in schema["properties"], option
    assert schema["additionalProperties"] is False
    json.dumps(schema)


def test_example_inputs_are_what_eval_takes() -> None:
    images = va.get_catalog().example_inputs(TASK, batch_size=3, input_size=(40, 56))
    assert isinstance(images, list)
    assert len(images) == 3
    assert all(image.shape == (3, 40, 56) and image.dtype == torch.float32 for image in images)


def test_demo_runs_the_demo_architecture() -> None:
    from visionatlas.cli.demo import run_demo

    result = run_demo(va.get_catalog(), TASK, batch_size=2, size=(96, 128), repeats=1, seed=0)
    assert result.error is None, result.error
    assert result.architecture == "ssdlite_mobilenet_v3"
    assert result.output is not None
    assert result.output.startswith("list[2] of {boxes: [")
    assert "labels" in result.output
    assert "scores" in result.output
