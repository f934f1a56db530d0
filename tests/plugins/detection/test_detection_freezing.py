"""Backbone freezing: trainable stages counted as torchvision's trainable_backbone_layers."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import visionatlas as va

TASK = "object_detection"


def _build(name: str, config: dict[str, Any]) -> Any:
    with torch.device("meta"):
        return va.create_model(TASK, name, config)


def _trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


RESNET_STAGES = ["layer4", "layer3", "layer2", "layer1", "conv1"]


@pytest.mark.parametrize("layers", [0, 1, 2, 3, 4, 5])
def test_resnet_trainable_layers_follow_torchvision(layers: int) -> None:
    model = _build("fasterrcnn_resnet50", {"trainable_backbone_layers": layers})
    body = model.backbone.body
    expected = RESNET_STAGES[:layers] + (["bn1"] if layers == 5 else [])
    for name, parameter in body.named_parameters():
        assert parameter.requires_grad == any(name.startswith(s) for s in expected), name
    assert _trainable(model.backbone.fpn) == va.count_parameters(model.backbone.fpn)
    assert _trainable(model.roi_heads) == va.count_parameters(model.roi_heads)


def test_freeze_backbone_freezes_the_body_only() -> None:
    model = _build("retinanet_resnet50", {"freeze_backbone": True})
    assert _trainable(model.backbone.body) == 0
    assert _trainable(model) == va.count_parameters(model) - va.count_parameters(
        model.backbone.body
    )


def test_ssdlite_counts_six_stages() -> None:
    model = _build("ssdlite_mobilenet_v3", {"trainable_backbone_layers": 1})
    features = model.backbone.features
    stages = model.backbone_stages()
    assert len(stages) == 6
    trainable = [n for n, p in features.named_parameters() if p.requires_grad]
    last = {id(p) for p in stages[-1].parameters()}
    assert trainable
    assert {id(p) for p in features.parameters() if p.requires_grad} == last
    assert _trainable(model.backbone.extra) == va.count_parameters(model.backbone.extra)
    everything = _build("ssdlite_mobilenet_v3", {})
    assert _trainable(everything) == va.count_parameters(everything)


@pytest.mark.parametrize("layers", [0, 2, 5])
def test_any_backbone_uses_backbone_stages(layers: int) -> None:
    model = _build("fcos", {"backbone": "convnext_tiny", "trainable_backbone_layers": layers})
    stages = model.backbone.body.stages()
    for index, stage in enumerate(stages):
        expected = index >= len(stages) - layers
        assert all(p.requires_grad == expected for p in stage.parameters()), index
    head = model.head
    assert _trainable(head) == va.count_parameters(head)


def test_freeze_and_unfreeze_methods() -> None:
    model = _build("fcos", {"backbone": "resnet18"})
    body = model.backbone.body
    assert _trainable(body) == va.count_parameters(body)
    model.freeze_backbone()
    assert _trainable(body) == 0
    model.freeze_backbone(trainable_layers=1)
    assert _trainable(body) == va.count_parameters(body.layer4)
    model.unfreeze_backbone()
    assert _trainable(body) == va.count_parameters(body)
    with pytest.raises(ValueError, match="between 0 and 5"):
        model.freeze_backbone(6)


def test_explicit_layers_apply_without_weights_too() -> None:
    """torchvision ignores trainable_backbone_layers without weights; here it is honoured."""
    model = _build("fcos_resnet50", {"trainable_backbone_layers": 2})
    body = model.backbone.body
    assert _trainable(body) == va.count_parameters(body.layer3) + va.count_parameters(body.layer4)
