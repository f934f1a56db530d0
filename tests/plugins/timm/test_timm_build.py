"""timm backbones built through visionatlas: options, weights, and the task architectures."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

import visionatlas as va
from visionatlas.errors import PretrainedWeightsError


@pytest.fixture
def offline_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty torch and Hugging Face caches, and no downloads."""
    monkeypatch.setenv("VISIONATLAS_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path / "hf"


def test_forward_matches_timm_features() -> None:
    torch.manual_seed(0)
    backbone = va.create_backbone("timm/resnet18").eval()
    reference = timm.create_model("resnet18", features_only=True, out_indices=(1, 2, 3, 4))
    reference.load_state_dict(backbone.model.state_dict(), strict=False)
    reference.eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        ours = backbone.forward_multiscale(x)
        theirs = reference(x)
    assert list(ours) == ["feat1", "feat2", "feat3", "feat4"]
    for mine, expected in zip(ours.values(), theirs, strict=True):
        torch.testing.assert_close(mine, expected)
    with torch.no_grad():
        pooled = backbone.forward_pre_logits(x)
    assert pooled.shape == (2, 512)


def test_options_reach_timm_create_model() -> None:
    backbone = va.create_backbone("timm/convnext_atto", drop_path_rate=0.2, drop_rate=0.1)
    rates = [m.drop_prob for m in backbone.modules() if type(m).__name__ == "DropPath"]
    assert rates
    assert max(rates) == pytest.approx(0.2)
    assert backbone.model.drop_rate == pytest.approx(0.1)
    wide = va.create_backbone("timm/resnet18", extra_kwargs={"output_stride": 16})
    strides = {
        name: 64 // f.shape[-1]
        for name, f in wide.forward_multiscale(torch.rand(1, 3, 64, 64)).items()
    }
    assert strides["feat4"] == 16  # dilated last stage
    with pytest.raises(ValueError, match=r"'resnet18' does not take the argument 'no_such_option'"):
        va.create_backbone("timm/resnet18", extra_kwargs={"no_such_option": 1})


def test_offline_pretrained_error_names_model_tag_and_location(offline_caches: Path) -> None:
    with pytest.raises(PretrainedWeightsError) as info:
        va.create_backbone("timm/resnet18", pretrained=True, weights="a1_in1k")
    message = str(info.value)
    assert "resnet18.a1_in1k" in message
    assert "timm/resnet18" in message
    assert "https://huggingface.co/timm/resnet18.a1_in1k" in message
    assert str(offline_caches / "models--timm--resnet18.a1_in1k") in message
    with pytest.raises(PretrainedWeightsError, match=r"no pretrained tag 'imagenet'.*a1_in1k"):
        va.create_backbone("timm/resnet18", pretrained=True, weights="imagenet")


def _timm_state(name: str, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return timm.create_model(name).state_dict()


def test_weights_from_the_hub_cache_load_offline(offline_caches: Path) -> None:
    from safetensors.torch import save_file

    state = _timm_state("resnet18", seed=3)
    snapshot = offline_caches / "models--timm--resnet18.a1_in1k" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    save_file(state, str(snapshot / "model.safetensors"))
    (offline_caches / "models--timm--resnet18.a1_in1k" / "refs").mkdir()
    (offline_caches / "models--timm--resnet18.a1_in1k" / "refs" / "main").write_text("abc123")
    model = va.create_model("classification", "timm/resnet18", {"pretrained": True}).eval()
    assert model.backbone.weights_source == str(snapshot / "model.safetensors")
    torch.testing.assert_close(model.backbone.model.conv1.weight, state["conv1.weight"])
    torch.testing.assert_close(model.head.fc.weight, state["fc.weight"])  # 1000 classes: adopted


def test_weights_path_loads_through_timm(tmp_path: Path) -> None:
    state = _timm_state("resnet18", seed=5)
    file = tmp_path / "mine.pth"
    torch.save(state, file)
    model = va.create_model("regression", "timm/resnet18", {"weights_path": str(file)}, 2)
    assert model.backbone.weights_source == str(file)
    torch.testing.assert_close(
        model.backbone.model.layer4[1].conv2.weight, state["layer4.1.conv2.weight"]
    )


def test_detector_on_a_timm_backbone_trains_a_step() -> None:
    torch.manual_seed(0)
    config = {"backbone": "timm/resnet18", "min_size": 96, "max_size": 128}
    model = va.create_model("object_detection", "fcos", config, num_classes=3)
    images = [torch.rand(3, 96, 128), torch.rand(3, 112, 96)]
    targets = [
        {"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[5.0, 8.0, 50.0, 90.0]]), "labels": torch.tensor([2])},
    ]
    model.train()
    losses = model(images, targets)
    trainable = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trainable]
    optimizer = torch.optim.SGD(trainable, lr=0.01)
    sum(losses.values()).backward()
    optimizer.step()
    moved = sum(not torch.equal(p, b) for p, b in zip(trainable, before, strict=True))
    assert moved > len(trainable) // 2
    model.eval()
    with torch.no_grad():
        (prediction, _) = model(images)
    assert prediction["boxes"].shape[1] == 4


def test_segmenter_on_a_timm_backbone_trains_a_step() -> None:
    torch.manual_seed(0)
    model = va.create_model("segmentation", "deeplabv3", {"backbone": "timm/convnext_atto"}, 4)
    images = torch.rand(2, 3, 64, 64)
    masks = torch.randint(0, 4, (2, 64, 64))
    model.train()
    losses = model(images, masks)
    trainable = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trainable]
    optimizer = torch.optim.SGD(trainable, lr=0.05)
    losses["loss"].backward()
    optimizer.step()
    moved = sum(not torch.equal(p, b) for p, b in zip(trainable, before, strict=True))
    assert moved > len(trainable) // 2
    model.eval()
    with torch.no_grad():
        assert model(images).shape == (2, 4, 64, 64)
