"""Every path that loads weights skips random initialisation and gives the ordinary result.

For one architecture per backbone family and every task, the model built from a weights
file through ``construct_and_load`` must equal, tensor for tensor and output for output,
the one built the ordinary way (initialise, then load: ``eager_loading()``), and must not
have fallen back to that way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models import detection as tv_detection
from torchvision.models import segmentation as tv_segmentation

import visionatlas as va
from visionatlas.models.deferred_init import eager_loading, placeholders

FALLBACK = "construct_and_load: initialising, then loading"


def _no_grad_eval(model: nn.Module, x: Any) -> Any:
    with torch.no_grad():
        return model.eval()(x)


def _same_outputs(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_outputs(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_outputs(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# (task, architecture, extra config, num_classes, weights file maker, example input)
IMAGE = torch.rand(1, 3, 64, 64)
IMAGES = [torch.rand(3, 96, 128)]
CASES: dict[str, tuple[str, str, dict[str, Any], int | None, Callable[[], nn.Module], Any]] = {
    "resnet": ("classification", "resnet18", {}, None, torchvision.models.resnet18, IMAGE),
    "efficientnet": (
        "classification", "efficientnet_b0", {}, 10, torchvision.models.efficientnet_b0, IMAGE,
    ),
    "mobilenet_v3": (
        "regression", "mobilenet_v3_small", {}, None, torchvision.models.mobilenet_v3_small,
        IMAGE,
    ),
    "convnext": ("classification", "convnext_tiny", {}, 5, torchvision.models.convnext_tiny, IMAGE),
    "swin": ("classification", "swin_v2_t", {}, None, torchvision.models.swin_v2_t, IMAGE),
    "vit": (
        "classification", "vit_b_32", {}, None, torchvision.models.vit_b_32,
        torch.rand(1, 3, 224, 224),
    ),
    "fasterrcnn": (
        "object_detection", "fasterrcnn_resnet50", {}, None,
        lambda: tv_detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None),
        IMAGES,
    ),
    "retinanet_new_classes": (
        "object_detection", "retinanet_resnet50", {}, 4,
        lambda: tv_detection.retinanet_resnet50_fpn(weights=None, weights_backbone=None),
        IMAGES,
    ),
    "ssdlite": (
        "object_detection", "ssdlite_mobilenet_v3", {}, None,
        lambda: tv_detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None),
        IMAGES,
    ),
    "fcos_any_backbone": (
        "object_detection", "fcos", {"backbone": "resnet18", "pretrained_scope": "full"}, 3,
        lambda: va.create_model("object_detection", "fcos", {"backbone": "resnet18"}, 3),
        IMAGES,
    ),
    "maskrcnn": (
        "instance_segmentation", "maskrcnn_resnet50", {}, None,
        lambda: tv_detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None),
        IMAGES,
    ),
    "maskrcnn_new_classes": (
        "instance_segmentation", "maskrcnn_resnet50", {}, 3,
        lambda: tv_detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None),
        IMAGES,
    ),
    "lraspp": (
        "segmentation", "lraspp_mobilenet", {}, None,
        lambda: tv_segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None),
        IMAGE,
    ),
    "lraspp_new_classes": (
        "segmentation", "lraspp_mobilenet", {}, 5,
        lambda: tv_segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None),
        IMAGE,
    ),
    "lraspp_backbone_scope": (
        "segmentation", "lraspp_mobilenet",
        {"pretrained_scope": "backbone"}, None, torchvision.models.mobilenet_v3_large, IMAGE,
    ),
    "timm": (
        "classification", "timm/resnet18", {}, None,
        lambda: __import__("timm").create_model("resnet18"), IMAGE,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_pretrained_build_equals_the_ordinary_path(
    case: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    task, name, extra, num_classes, make, example = CASES[case]
    torch.manual_seed(0)
    source = make().state_dict()
    path = tmp_path / "weights.pth"
    torch.save(source, path)
    config = {**extra, "pretrained": True, "weights_path": str(path)}
    caplog.set_level(logging.DEBUG, logger="visionatlas.models.deferred_init")
    fast = va.create_model(task, name, config, num_classes)
    assert FALLBACK not in caplog.text
    with eager_loading():
        ordinary = va.create_model(task, name, config, num_classes)
    assert placeholders(fast) == []
    fast_state, ordinary_state = fast.state_dict(), ordinary.state_dict()
    assert fast_state.keys() == ordinary_state.keys()
    fresh = [k for k in fast_state if not torch.equal(fast_state[k], ordinary_state[k])]
    new_head = task == "regression" or (task == "classification" and num_classes)
    if new_head or case.endswith(("_new_classes", "_backbone_scope")):
        assert fresh, "the new class layers should be freshly initialised"
        assert all("head" in k or "classifier" in k for k in fresh), fresh
        ordinary.load_state_dict(fast_state)  # the rest is equal: compare outputs
    else:
        assert fresh == []
    torch.manual_seed(1)
    assert _same_outputs(_no_grad_eval(fast, example), _no_grad_eval(ordinary, example))


def test_registry_and_checkpoint_loads_equal_the_ordinary_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    torch.manual_seed(0)
    model = va.create_model("classification", "resnet18", num_classes=7).eval()
    store = va.ModelRegistry(tmp_path / "registry")
    store.register("r18", "1.0.0", model)
    va.save_checkpoint(model, path=tmp_path / "ckpt")
    caplog.set_level(logging.DEBUG, logger="visionatlas.models.deferred_init")
    loaded = store.load("r18")
    restored = va.load_checkpoint(tmp_path / "ckpt").model
    assert FALLBACK not in caplog.text
    with eager_loading():
        ordinary = store.load("r18")
    x = torch.rand(2, 3, 64, 64)
    expected = _no_grad_eval(model, x)
    for built in (loaded, restored, ordinary):
        assert placeholders(built) == []
        assert torch.equal(_no_grad_eval(built, x), expected)


def test_saved_anomaly_detector_loads_without_initialising(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from visionatlas_anomaly.persistence import load_detector, save_detector

    torch.manual_seed(0)
    detector = va.create_model("anomaly_detection", "uninformed_students_resnet18")
    path = save_detector(detector, tmp_path / "detector")
    caplog.set_level(logging.DEBUG, logger="visionatlas.models.deferred_init")
    fast = load_detector(path)
    assert FALLBACK not in caplog.text
    with eager_loading():
        ordinary = load_detector(path)
    assert placeholders(fast) == []
    expected = detector.state_dict()
    for built in (fast, ordinary):
        state = built.state_dict()
        assert state.keys() == expected.keys()
        assert all(torch.equal(state[k], expected[k]) for k in expected)
