"""The classification plugin: equality with torchvision, heads, freezing, pretrained loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

import visionatlas as va
from visionatlas.models.backbones.weights import checkpoint_path, torchvision_weights
from visionatlas.models.composition import BackboneHeadModel

SEED_KEYS = [
    "resnet18",
    "resnet34",
    "resnet50",
    "efficientnet_b0",
    "efficientnet_b3",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
]
FAMILY_REPRESENTATIVES = ["convnext_tiny", "swin_t", "vit_b_32", "resnext50_32x4d"]


def _torchvision_reference(name: str, home: Path) -> torch.nn.Module:
    """A torchvision model with random weights saved where the hub cache expects them."""
    torch.manual_seed(1)
    reference = torchvision.models.get_model(name, weights=None).eval()
    spec = va.get_backbone(name)
    target = checkpoint_path(torchvision_weights(spec.pretrained_weights, None))
    assert str(target).startswith(str(home))
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(reference.state_dict(), target)
    return reference


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("VISIONATLAS_OFFLINE", "1")
    return tmp_path


@pytest.mark.parametrize("name", SEED_KEYS + FAMILY_REPRESENTATIVES)
def test_same_weights_same_output_as_torchvision(name: str, torch_home: Path) -> None:
    reference = _torchvision_reference(name, torch_home)
    model = va.create_model("classification", name, {"pretrained": True}, num_classes=1000)
    model.eval()
    size = 224 if name.startswith("vit") else 96
    x = torch.rand(2, 3, size, size)
    with torch.inference_mode():
        expected, actual = reference(x), model(x)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


def test_pretrained_with_new_classes_loads_backbone_only(torch_home: Path) -> None:
    reference = _torchvision_reference("resnet18", torch_home)
    model = va.create_model("classification", "resnet18", {"pretrained": True}, num_classes=5)
    assert torch.equal(model.backbone.conv1.weight, reference.conv1.weight)
    assert model.head.fc.out_features == 5
    assert not torch.equal(model.head.fc.weight[:5], reference.fc.weight[:5])


def test_pretrained_offline_without_file_names_where_to_put_it(torch_home: Path) -> None:
    with pytest.raises(va.PretrainedWeightsError) as info:
        va.create_model("classification", "resnet18", {"pretrained": True})
    message = str(info.value)
    assert "ResNet18_Weights" in message
    assert str(torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message
    assert "weights_path" in message


def test_local_weights_file(tmp_path: Path) -> None:
    torch.manual_seed(2)
    reference = torchvision.models.resnet34(weights=None).eval()
    path = tmp_path / "my-resnet34.pth"
    torch.save(reference.state_dict(), path)
    model = va.create_model("classification", "resnet34", {"weights_path": str(path)}).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-4, atol=1e-5)


def test_structure_dropout_and_freeze() -> None:
    model = va.create_model(
        "classification", "efficientnet_b0", {"dropout": 0.5, "freeze_backbone": True}, 10
    )
    assert isinstance(model, BackboneHeadModel)
    assert model.head.dropout.p == 0.5
    assert model.head.fc.out_features == 10
    assert va.count_parameters(model) == 1280 * 10 + 10
    default = va.create_model("classification", "efficientnet_b0", num_classes=10)
    assert default.head.dropout.p == 0.2  # the family's own classifier dropout


def test_freeze_backbone_trains_only_the_head() -> None:
    model = va.create_model("classification", "resnet18", {"freeze_backbone": True}, 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.eval()  # keep BatchNorm statistics fixed; only gradients matter here
    loss = torch.nn.functional.cross_entropy(model(torch.rand(2, 3, 64, 64)), torch.tensor([0, 3]))
    loss.backward()
    optimizer.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"head.fc.weight", "head.fc.bias"}


def test_head_can_be_replaced_for_new_classes() -> None:
    model = va.create_model("classification", "mobilenet_v3_small", num_classes=1000)
    model.reset_head(7)
    assert model.head.fc.out_features == 7
    assert model.head.fc.in_features == 1024
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 7)


def test_backbone_config_in_model_config() -> None:
    backbone = va.BackboneConfig(model_name="convnext_tiny", drop_path_rate=0.1)
    config = va.ModelConfig(backbone=backbone)
    model = va.create_model("classification", "convnext_tiny", config, num_classes=2)
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 2)


# -- input checks (issue 11) ----------------------------------------------------------------------
BAD_IMAGES = [
    ("grey", torch.rand(2, 1, 32, 32), "images have 1 channel (shape (2, 1, 32, 32))"),
    ("rgba", torch.rand(2, 4, 32, 32), "images have 4 channels (shape (2, 4, 32, 32))"),
    ("uint8", torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "images have dtype torch.uint8"),
]


@pytest.mark.parametrize(("case", "images", "found"), BAD_IMAGES, ids=[c for c, *_ in BAD_IMAGES])
def test_a_classifier_says_what_was_wrong_with_the_images(
    case: str, images: torch.Tensor, found: str
) -> None:
    model = va.create_model("classification", "mobilenet_v3_small", num_classes=3).eval()
    with pytest.raises(va.InvalidInputError) as info:
        model(images)
    message = str(info.value)
    assert found in message
    assert "expects images as a float tensor of shape (N, 3, H, W)" in message
    assert message.startswith(found)


def test_a_classifier_names_the_images_with_nan_when_asked() -> None:
    images = torch.rand(3, 3, 32, 32)
    images[2, :, 4, 4] = float("nan")
    quiet = va.create_model("classification", "mobilenet_v3_small", num_classes=3).eval()
    with torch.no_grad():
        assert torch.isnan(quiet(images)[2]).all()  # silent without the check
    model = va.create_model(
        "classification", "mobilenet_v3_small", num_classes=3, check_inputs=True
    ).eval()
    with torch.no_grad(), pytest.raises(va.NonFiniteInputError, match=r"images\[2\] has 3 NaN"):
        model(images)


def test_torch_export_of_a_checked_classifier() -> None:
    model = va.create_model(
        "classification", "mobilenet_v3_small", num_classes=3, check_inputs=True
    ).eval()
    images = torch.rand(2, 3, 32, 32)
    with va.checking_inputs():
        program = va.export_program(model, input_size=32)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(images), model(images))
