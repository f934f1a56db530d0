"""Pretrained weights (whole model, backbone only, offline errors) and freezing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

import visionatlas as va
from visionatlas.models.backbones.weights import checkpoint_path, torchvision_weights

TASK = "segmentation"


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("VISIONATLAS_OFFLINE", "1")
    return tmp_path


def _reference(builder: str, seed: int, **kwargs: Any) -> nn.Module:
    torch.manual_seed(seed)
    fn = getattr(torchvision.models.segmentation, builder)
    options: dict[str, Any] = {"weights": None, "weights_backbone": None, "num_classes": 21}
    return fn(**options, **kwargs).eval()


def _cache(model: nn.Module, weights_ref: str, home: Path) -> Path:
    """Save ``model``'s weights where torch hub keeps the file of ``weights_ref``."""
    target = checkpoint_path(torchvision_weights(weights_ref))
    assert target.is_relative_to(home)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), target)
    return target


def _equal_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


LRASPP_WEIGHTS = "LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1"
DEEPLAB_MNV3_WEIGHTS = "DeepLabV3_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1"


@pytest.mark.parametrize(
    ("name", "builder", "weights", "aux"),
    [
        ("lraspp_mobilenet", "lraspp_mobilenet_v3_large", LRASPP_WEIGHTS, None),
        ("deeplabv3_mobilenet", "deeplabv3_mobilenet_v3_large", DEEPLAB_MNV3_WEIGHTS, True),
    ],
)
def test_full_weights_from_the_hub_cache_equal_torchvision(
    name: str, builder: str, weights: str, aux: bool | None, torch_home: Path
) -> None:
    extra = {} if aux is None else {"aux_loss": aux}
    reference = _reference(builder, 1, **extra)
    _cache(reference, weights, torch_home)
    model = va.create_model(TASK, name, {"pretrained": True}).eval()
    assert _equal_state(model, reference)
    images = torch.rand(2, 3, 64, 80)
    with torch.no_grad():
        torch.testing.assert_close(model(images), reference(images)["out"], rtol=0, atol=0)


def test_full_weights_with_other_classes_replace_only_the_class_layers(torch_home: Path) -> None:
    reference = _reference("deeplabv3_mobilenet_v3_large", 2, aux_loss=True)
    _cache(reference, DEEPLAB_MNV3_WEIGHTS, torch_home)
    model = va.create_model(TASK, "deeplabv3_mobilenet", {"pretrained": True}, num_classes=5)
    assert model.class_layers() == ["classifier.4", "aux_classifier.4"]
    ours, theirs = model.state_dict(), reference.state_dict()
    for key, value in theirs.items():
        if key.startswith(("classifier.4.", "aux_classifier.4.")):
            assert ours[key].shape[0] == 5
            assert not torch.equal(ours[key][:5], value[:5])
        else:
            assert torch.equal(ours[key], value), key
    assert model(torch.rand(2, 3, 48, 48), torch.randint(0, 5, (2, 48, 48)))["loss"].isfinite()


def test_full_weights_lraspp_other_classes(torch_home: Path) -> None:
    reference = _reference("lraspp_mobilenet_v3_large", 3)
    _cache(reference, LRASPP_WEIGHTS, torch_home)
    model = va.create_model(TASK, "lraspp_mobilenet", {"pretrained": True}, num_classes=2)
    head, ref_head = model.classifier, reference.classifier
    assert head.low_classifier.out_channels == head.high_classifier.out_channels == 2
    assert torch.equal(head.cbr[0].weight, ref_head.cbr[0].weight)
    assert _equal_state(model.backbone, reference.backbone)


def test_weights_path_without_aux_head_and_model_without_aux(tmp_path: Path) -> None:
    no_aux = _reference("deeplabv3_mobilenet_v3_large", 4, aux_loss=False)
    path = tmp_path / "finetuned.pth"
    torch.save(no_aux.state_dict(), path)
    model = va.create_model(TASK, "deeplabv3_mobilenet", {"weights_path": str(path)})
    assert model.aux_classifier is not None  # kept, freshly initialized
    assert torch.equal(model.classifier[4].weight, no_aux.classifier[4].weight)
    with_aux = _reference("deeplabv3_mobilenet_v3_large", 5, aux_loss=True)
    torch.save(with_aux.state_dict(), path)
    plain = va.create_model(TASK, "deeplabv3_mobilenet", {"weights_path": path, "aux_loss": False})
    assert plain.aux_classifier is None  # the checkpoint's auxiliary head is dropped
    assert _equal_state(plain.classifier, with_aux.classifier)


def test_weights_of_another_model_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "lraspp.pth"
    torch.save(_reference("lraspp_mobilenet_v3_large", 6).state_dict(), path)
    with pytest.raises(va.PretrainedWeightsError, match=r"do not match .*'deeplabv3_mobilenet'"):
        va.create_model(TASK, "deeplabv3_mobilenet", {"weights_path": str(path)})


def test_backbone_only_weights_equal_torchvision_weights_backbone(torch_home: Path) -> None:
    torch.manual_seed(7)
    imagenet = torchvision.models.mobilenet_v3_large()
    _cache(imagenet, "MobileNet_V3_Large_Weights.IMAGENET1K_V1", torch_home)
    config = {"pretrained": True, "pretrained_scope": "backbone"}
    model = va.create_model(TASK, "lraspp_mobilenet", config)
    reference = torchvision.models.segmentation.lraspp_mobilenet_v3_large(
        weights=None,
        weights_backbone=torchvision.models.MobileNet_V3_Large_Weights.IMAGENET1K_V1,
    )  # torchvision reads the same cached file
    assert _equal_state(model.backbone, reference.backbone)
    assert torch.equal(model.backbone["0"][0].weight, imagenet.features[0][0].weight)
    # the same through the backbone config
    same = va.create_model(
        TASK,
        "lraspp_mobilenet",
        {"backbone": {"model_name": "mobilenet_v3_large", "pretrained": True}},
    )
    assert _equal_state(same.backbone, model.backbone)


def test_backbone_only_weights_from_a_local_file(tmp_path: Path) -> None:
    torch.manual_seed(8)
    imagenet = torchvision.models.resnet50()
    path = tmp_path / "resnet50-imagenet.pth"
    torch.save(imagenet.state_dict(), path)
    config = {"weights_path": str(path), "pretrained_scope": "backbone"}
    model = va.create_model(TASK, "fcn_resnet50", config)
    assert torch.equal(model.backbone.layer4[2].conv3.weight, imagenet.layer4[2].conv3.weight)
    assert torch.equal(model.backbone.bn1.running_var, imagenet.bn1.running_var)


def test_generic_architecture_loads_backbone_weights(torch_home: Path) -> None:
    torch.manual_seed(9)
    imagenet = torchvision.models.resnet18()
    spec = va.get_backbone("resnet18")
    _cache(imagenet, spec.pretrained_weights or "", torch_home)
    model = va.create_model(TASK, "deeplabv3", {"backbone": "resnet18", "pretrained": True})
    assert torch.equal(model.backbone.conv1.weight, imagenet.conv1.weight)
    with pytest.raises(ValueError, match="no whole-model checkpoint"):
        va.create_model(
            TASK, "fcn", {"backbone": "resnet18", "pretrained": True, "pretrained_scope": "full"}
        )


def test_offline_without_file_names_where_to_put_it(torch_home: Path) -> None:
    with pytest.raises(va.PretrainedWeightsError) as info:
        va.create_model(TASK, "lraspp_mobilenet", {"pretrained": True})
    message = str(info.value)
    expected = torch_home / "hub" / "checkpoints" / "lraspp_mobilenet_v3_large-d234d4ea.pth"
    assert str(expected) in message
    assert "LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1" in message
    assert "weights_path" in message
    assert "pretrained_scope='backbone'" in message
    assert isinstance(info.value, FileNotFoundError)


def test_offline_backbone_only_names_the_imagenet_file(torch_home: Path) -> None:
    with pytest.raises(va.PretrainedWeightsError) as info:
        va.create_model(TASK, "fcn_resnet50", {"pretrained": True, "pretrained_scope": "backbone"})
    expected = torch_home / "hub" / "checkpoints" / "resnet50-0676ba61.pth"  # IMAGENET1K_V1
    assert str(expected) in str(info.value)


def _trainable(model: nn.Module, prefix: str) -> set[bool]:
    return {p.requires_grad for n, p in model.named_parameters() if n.startswith(prefix)}


def test_freeze_backbone_leaves_only_the_heads_trainable() -> None:
    model = va.create_model(TASK, "deeplabv3_mobilenet", {"freeze_backbone": True}, num_classes=3)
    assert _trainable(model, "backbone.") == {False}
    assert _trainable(model, "classifier.") == _trainable(model, "aux_classifier.") == {True}
    losses = model.train()(torch.rand(2, 3, 48, 48), torch.randint(0, 3, (2, 48, 48)))
    losses["loss"].backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    model.unfreeze_backbone()
    assert _trainable(model, "backbone.") == {True}


def test_trainable_backbone_layers_torchvision_resnet() -> None:
    with torch.device("meta"):
        model = va.create_model(TASK, "fcn_resnet50", {"trainable_backbone_layers": 2})
    for prefix, trainable in [
        ("backbone.conv1.", False),
        ("backbone.bn1.", False),
        ("backbone.layer2.", False),
        ("backbone.layer3.", True),
        ("backbone.layer4.", True),
        ("classifier.", True),
    ]:
        assert _trainable(model, prefix) == {trainable}, prefix


def test_trainable_backbone_layers_torchvision_mobilenet() -> None:
    with torch.device("meta"):
        model = va.create_model(TASK, "lraspp_mobilenet", {"trainable_backbone_layers": 1})
    trainable_blocks = {
        int(name.split(".")[1]) for name, p in model.backbone.named_parameters(prefix="backbone")
        if p.requires_grad
    }  # fmt: skip
    assert trainable_blocks == set(range(13, 17))  # the last (stride 32 -> dilated) stage


def test_trainable_backbone_layers_generic() -> None:
    config = {"backbone": "resnet18", "freeze_backbone": True, "trainable_backbone_layers": 1}
    with torch.device("meta"):
        model = va.create_model(TASK, "fcn", config)
    assert _trainable(model, "backbone.layer4.") == {True}
    assert _trainable(model, "backbone.layer3.") == {False}
    with pytest.raises(ValueError, match="between 0 and 5"):
        va.create_model(TASK, "fcn", {"backbone": "resnet18", "trainable_backbone_layers": 6})
