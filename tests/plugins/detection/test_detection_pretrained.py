"""Pretrained loading from files the tests write: full weights, class replacement, backbone only.

No network: ``TORCH_HOME`` points at an empty temporary hub cache and ``VISIONATLAS_OFFLINE``
is set; reference checkpoints are freshly built torchvision models saved where torchvision's
own loader would look, so torchvision's builders load the very same files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchvision
from torchvision.models import detection as tv_detection
from torchvision.ops.misc import FrozenBatchNorm2d

import visionatlas as va
from visionatlas.models.backbones.weights import checkpoint_path, torchvision_weights

TASK = "object_detection"
Batch = tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]


def _save_in_cache(state: dict[str, torch.Tensor], weights_ref: str) -> Path:
    path = checkpoint_path(torchvision_weights(weights_ref))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def _perturbed_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A state dict whose BatchNorm statistics are not the identity, so they matter."""
    generator = torch.Generator().manual_seed(0)
    state = model.state_dict()
    for key, value in state.items():
        if key.endswith("running_var"):
            value.copy_(0.5 + torch.rand(value.shape, generator=generator))
        elif key.endswith("running_mean"):
            value.copy_(0.1 * torch.randn(value.shape, generator=generator))
    return state


def _predict(model: torch.nn.Module, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    model.eval()
    with torch.no_grad():
        return model(images)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("name", "builder", "weights"),
    [
        (
            "ssdlite_mobilenet_v3",
            tv_detection.ssdlite320_mobilenet_v3_large,
            "SSDLite320_MobileNet_V3_Large_Weights.COCO_V1",
        ),
        (
            "fasterrcnn_resnet50",
            tv_detection.fasterrcnn_resnet50_fpn,
            "FasterRCNN_ResNet50_FPN_Weights.COCO_V1",
        ),
    ],
)
def test_full_weights_give_torchvision_pretrained_model(
    name: str, builder: Callable[..., torch.nn.Module], weights: str, torch_home: Path
) -> None:
    torch.manual_seed(0)
    _save_in_cache(_perturbed_state(builder(weights=None, weights_backbone=None)), weights)
    reference = builder(weights=torchvision_weights(weights))  # reads the same cached file
    sizes = {"min_size": 160} if name.startswith("ssdlite") else {"min_size": 160, "max_size": 200}
    ours = va.create_model(TASK, name, {"pretrained": True, **sizes})
    reference.transform = ours.transform  # same resizing on both sides
    images = [torch.rand(3, 150, 190)]
    expected, actual = _predict(reference, images)[0], _predict(ours, images)[0]
    assert actual["boxes"].shape[0] > 0
    for key in ("boxes", "scores", "labels"):
        torch.testing.assert_close(actual[key], expected[key])
    trainable = {k for k, p in ours.named_parameters() if p.requires_grad}
    assert trainable == {k for k, p in reference.named_parameters() if p.requires_grad}
    frozen = [m for m in ours.modules() if isinstance(m, FrozenBatchNorm2d)]
    if name == "fasterrcnn_resnet50":  # torchvision's eps fix-up for these COCO_V1 weights
        assert frozen
        assert all(m.eps == 0.0 for m in frozen)
    else:
        assert not frozen


def test_new_classes_replace_only_the_class_layers(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = va.create_model(TASK, "ssdlite_mobilenet_v3")  # 91 classes
    path = tmp_path / "ssdlite-coco.pth"
    torch.save(source.state_dict(), path)
    model = va.create_model(TASK, "ssdlite_mobilenet_v3", {"weights_path": path}, num_classes=5)
    assert model.num_classes == 5
    class_layers = {f"{name}.{p}" for name, _ in model.class_layers() for p in ("weight", "bias")}
    state, loaded = source.state_dict(), model.state_dict()
    assert set(state) == set(loaded)
    for key, value in loaded.items():
        if key in class_layers:
            assert value.shape[0] == state[key].shape[0] // 91 * 5
        else:
            assert torch.equal(value, state[key]), key
    weight = model.head.classification_head.module_list[0][1].weight.detach()
    assert 0.02 < float(weight.std()) < 0.04  # SSDLite's own init (std 0.03)
    images = [torch.rand(3, 120, 100)]
    labels = _predict(model, images)[0]["labels"]
    assert bool(((labels >= 1) & (labels < 5)).all())


def test_any_backbone_full_checkpoint_with_other_classes(
    tmp_path: Path, small: dict[str, int], make_batch: Callable[..., Batch]
) -> None:
    config = {**small, "backbone": "resnet18"}
    torch.manual_seed(0)
    trained = va.create_model(TASK, "retinanet", config, num_classes=11)
    path = tmp_path / "retinanet-r18.pth"
    torch.save(trained.state_dict(), path)
    full = {**config, "weights_path": path, "pretrained_scope": "full"}
    same = va.create_model(TASK, "retinanet", full, num_classes=11)
    images, _ = make_batch()
    for a, b in zip(_predict(same, images), _predict(trained, images), strict=True):
        torch.testing.assert_close(a["scores"], b["scores"])
    other = va.create_model(TASK, "retinanet", full, num_classes=3)
    logits = other.head.classification_head.cls_logits
    assert logits.out_channels == 9 * 3
    assert torch.equal(
        other.backbone.fpn.layer_blocks[0][0].weight, trained.backbone.fpn.layer_blocks[0][0].weight
    )
    assert float(logits.bias.detach()[0]) == pytest.approx(-4.59512, abs=1e-4)  # prior 0.01
    assert isinstance(other.backbone.body.bn1, FrozenBatchNorm2d)  # trained weights: frozen BN


def test_backbone_only_weights_match_torchvision_weights_backbone(torch_home: Path) -> None:
    torch.manual_seed(0)
    imagenet = torchvision.models.resnet50()
    _save_in_cache(_perturbed_state(imagenet), "ResNet50_Weights.IMAGENET1K_V1")
    ours = va.create_model(
        TASK, "fcos_resnet50", {"pretrained": True, "pretrained_scope": "backbone"}, 5
    )
    reference = tv_detection.fcos_resnet50_fpn(
        weights=None,
        weights_backbone=torchvision.models.ResNet50_Weights.IMAGENET1K_V1,
        num_classes=5,
    )
    body, expected = ours.backbone.body.state_dict(), reference.backbone.body.state_dict()
    assert body.keys() == expected.keys()
    for key in body:
        torch.testing.assert_close(body[key], expected[key])
    assert torch.equal(body["conv1.weight"], imagenet.conv1.weight)
    trainable = {k for k, p in ours.named_parameters() if p.requires_grad}
    assert trainable == {k for k, p in reference.named_parameters() if p.requires_grad}
    assert not any(k.startswith("backbone.body.layer1") for k in trainable)  # 3 stages train


def test_ssdlite_backbone_only_uses_the_full_tail(torch_home: Path) -> None:
    torch.manual_seed(0)
    imagenet = torchvision.models.mobilenet_v3_large()
    _save_in_cache(imagenet.state_dict(), "MobileNet_V3_Large_Weights.IMAGENET1K_V1")
    config = {"pretrained": True, "pretrained_scope": "backbone"}
    ours = va.create_model(TASK, "ssdlite_mobilenet_v3", config)
    reference = tv_detection.ssdlite320_mobilenet_v3_large(
        weights_backbone=torchvision.models.MobileNet_V3_Large_Weights.IMAGENET1K_V1
    )
    shapes = {k: v.shape for k, v in ours.state_dict().items()}
    assert shapes == {k: v.shape for k, v in reference.state_dict().items()}
    assert torch.equal(ours.backbone.features[0][0][0].weight, imagenet.features[0][0].weight)
    assert va.count_parameters(ours) > va.get_architecture(TASK, "ssdlite_mobilenet_v3").num_params


def test_any_backbone_imagenet_weights_through_the_core(torch_home: Path) -> None:
    torch.manual_seed(0)
    imagenet = torchvision.models.resnet18()
    _save_in_cache(imagenet.state_dict(), "ResNet18_Weights.IMAGENET1K_V1")
    model = va.create_model(TASK, "fcos", {"backbone": "resnet18", "pretrained": True})
    assert torch.equal(model.backbone.body.layer3[0].conv1.weight, imagenet.layer3[0].conv1.weight)
    assert isinstance(model.backbone.body.bn1, FrozenBatchNorm2d)
    assert model.backbone.body.bn1.running_var.shape == (64,)
    assert not model.backbone.body.layer1[0].conv1.weight.requires_grad  # default: 3 stages
    assert model.backbone.body.layer2[0].conv1.weight.requires_grad


def test_offline_error_names_where_to_put_the_file(torch_home: Path) -> None:
    with pytest.raises(va.PretrainedWeightsError) as info:
        va.create_model(TASK, "retinanet_resnet50_v2", {"pretrained": True})
    message = str(info.value)
    expected = torch_home / "hub" / "checkpoints" / "retinanet_resnet50_fpn_v2_coco-5905b1c5.pth"
    assert str(expected) in message
    assert "retinanet_resnet50_v2" in message
    assert "weights_path" in message
    assert "https://download.pytorch.org/models/retinanet_resnet50_fpn_v2_coco" in message
    with pytest.raises(va.PretrainedWeightsError, match=r"resnet50-0676ba61\.pth"):
        va.create_model(TASK, "fcos_resnet50", {"pretrained": True, "pretrained_scope": "backbone"})


def test_weights_member_choice(torch_home: Path) -> None:
    with pytest.raises(ValueError, match="valid members: COCO_V1, DEFAULT"):
        va.create_model(TASK, "fcos_resnet50", {"pretrained": True, "weights": "COCO_V9"})
    with pytest.raises(va.PretrainedWeightsError, match=r"resnet50-11ad3fa6\.pth"):
        va.create_model(
            TASK,
            "fasterrcnn_resnet50",
            {
                "pretrained": True,
                "pretrained_scope": "backbone",
                "backbone_weights": "IMAGENET1K_V2",
            },
        )


def test_bad_weight_files(tmp_path: Path) -> None:
    with pytest.raises(va.PretrainedWeightsError, match="does not exist"):
        va.create_model(TASK, "ssdlite_mobilenet_v3", {"weights_path": tmp_path / "none.pth"})
    backbone_only = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v3_large().state_dict(), backbone_only)
    with pytest.raises(va.PretrainedWeightsError, match="pretrained_scope='backbone'"):
        va.create_model(TASK, "ssdlite_mobilenet_v3", {"weights_path": backbone_only})
    other = tmp_path / "fcos-r18.pth"
    with torch.device("meta"):
        state = va.create_model(TASK, "fcos", {"backbone": "resnet18"}).state_dict()
    torch.save({k: torch.zeros(v.shape) for k, v in state.items()}, other)
    with pytest.raises(va.PretrainedWeightsError, match=r"do not match fcos: .* missing keys"):
        va.create_model(
            TASK,
            "fcos",
            {"backbone": "resnet34", "weights_path": other, "pretrained_scope": "full"},
        )
