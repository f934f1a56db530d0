"""The torchvision backbones: catalog data, shapes, torchvision equality, weights, freezing."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision.models as tvm
from torch import nn
from torch.func import functional_call

from visionatlas.config import BackboneConfig
from visionatlas.errors import PretrainedWeightsError
from visionatlas.models.backbones import builtin, weights
from visionatlas.models.backbones.base import Backbone
from visionatlas.models.backbones.torchvision_specs import BACKBONES
from visionatlas.plugins.lazy import resolve

SPECS = {spec.name: spec for spec in BACKBONES}
ONE_PER_FAMILY = (
    "resnet18", "efficientnet_b0", "mobilenet_v3_small", "convnext_tiny", "swin_t", "vit_b_32"
)  # fmt: skip
FINAL_LAYER = {
    "resnet": "fc.",
    "efficientnet": "classifier.1.",
    "mobilenet_v3": "classifier.3.",
    "convnext": "classifier.2.",
    "swin": "head.",
    "vit": "heads.head.",
}
PRE_LOGITS_KEYS = {"mobilenet_v3": "classifier.0.", "convnext": "classifier.0."}


@pytest.fixture(autouse=True, scope="module")
def _one_intra_op_thread() -> Iterator[None]:
    """Inputs here are tiny: one thread is as fast and immune to oversubscribed CI cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def build(name: str, **fields: Any) -> Backbone:
    backbone = resolve(SPECS[name].builder)(BackboneConfig(model_name=name, **fields))
    assert isinstance(backbone, Backbone)
    return backbone


def final_layer(model: nn.Module, family: str) -> nn.Linear:
    layer = model.get_submodule(FINAL_LAYER[family].rstrip("."))
    assert isinstance(layer, nn.Linear)
    return layer


def torchvision_model(name: str, seed: int = 0) -> nn.Module:
    """A randomly initialised torchvision model with a non-trivial final layer, in eval mode."""
    torch.manual_seed(seed)
    model = tvm.get_model(name).eval()
    nn.init.normal_(final_layer(model, SPECS[name].family).weight, std=0.02)
    return model


def trainable(module: nn.Module) -> set[int]:
    return {id(p) for p in module.parameters() if p.requires_grad}


# -- every catalogued backbone ---------------------------------------------------------------
@pytest.mark.parametrize("spec", BACKBONES, ids=lambda spec: spec.name)
def test_backbone_matches_its_spec(spec: Any) -> None:
    torch.manual_seed(0)
    backbone = build(spec.name).eval()
    params = list(backbone.parameters())
    assert sum(p.numel() for p in params) == spec.num_params
    assert backbone.name == spec.name
    assert backbone.out_channels == spec.out_channels
    assert backbone.pre_logits_dim == spec.pre_logits_dim
    assert backbone.feature_info == spec.feature_levels
    assert spec.feature_levels[-1].channels == spec.out_channels

    # Two real forward passes: the levels at 64x64, pre-logits at the smallest input size.
    size, smallest = 64, spec.min_input_size
    with torch.inference_mode():
        feats = backbone.forward_multiscale(torch.randn(2, 3, size, size))
        pre_logits = backbone.forward_pre_logits(torch.randn(2, 3, smallest, smallest))
    assert list(feats) == [level.name for level in spec.feature_levels]
    for level in spec.feature_levels:
        side = size // level.stride
        assert feats[level.name].shape == (2, level.channels, side, side), level.name
    assert pre_logits.shape == (2, spec.pre_logits_dim)
    assert torch.isfinite(pre_logits).all()

    # Stages and pre-logits partition the parameters.
    groups = [*backbone.stages(), *backbone._pre_logits_modules()]
    assert len(backbone.stages()) == len(spec.feature_levels) + 1
    owned = [{id(p) for p in group.parameters()} for group in groups]
    assert sum(len(ids) for ids in owned) == len(params)
    assert set().union(*owned) == {id(p) for p in params}

    # State-dict keys are torchvision's, minus the final layer, pre-logits renamed.
    with torch.device("meta"):
        reference = tvm.get_model(spec.name)
    expected = set()
    for key in reference.state_dict():
        if key.startswith(FINAL_LAYER[spec.family]):
            continue
        old = PRE_LOGITS_KEYS.get(spec.family)
        expected.add("pre_logits.0." + key[len(old) :] if old and key.startswith(old) else key)
    assert set(backbone.state_dict()) == expected


def test_catalog_data_is_consistent() -> None:
    assert len(SPECS) == len(BACKBONES) == 37
    for spec in BACKBONES:
        weights_enum = tvm.get_model_weights(spec.name)
        assert spec.pretrained_weights == f"{weights_enum.__name__}.{weights_enum.DEFAULT.name}"
        assert spec.default_input_size == weights_enum.DEFAULT.transforms().crop_size[0]
        assert spec.display_name
        assert spec.note
    assert SPECS["resnet50"].pretrained_weights == "ResNet50_Weights.IMAGENET1K_V2"
    assert SPECS["efficientnet_b3"].default_input_size == 300
    rates = {name: SPECS[name].default_drop_rate for name in SPECS if "efficientnet" in name}
    assert rates == {
        "efficientnet_b0": 0.2, "efficientnet_b1": 0.2, "efficientnet_b2": 0.3,
        "efficientnet_b3": 0.3, "efficientnet_b4": 0.4, "efficientnet_b5": 0.4,
        "efficientnet_b6": 0.5, "efficientnet_b7": 0.5, "efficientnet_v2_s": 0.2,
        "efficientnet_v2_m": 0.3, "efficientnet_v2_l": 0.4,
    }  # fmt: skip
    assert SPECS["mobilenet_v3_large"].default_drop_rate == 0.2
    assert SPECS["resnet50"].default_drop_rate == 0.0


def test_builtin_plugin_is_torch_free_and_registers_everything() -> None:
    code = (
        "import sys, visionatlas.models.backbones.builtin as b; "
        "print(len(b.BACKBONES), 'torch' in sys.modules, 'torchvision' in sys.modules)"
    )
    src = str(Path(builtin.__file__).parents[2])
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": src},
    )
    assert result.stdout.split() == ["37", "False", "False"]

    class Recorder:
        def __init__(self) -> None:
            self.names: list[str] = []

        def add_backbone(self, spec: Any) -> None:
            self.names.append(spec.name)

    recorder = Recorder()
    assert builtin.visionatlas_api_version() == 1
    builtin.visionatlas_register_backbones(recorder)
    assert recorder.names == [spec.name for spec in BACKBONES]


# -- equality with torchvision ---------------------------------------------------------------
@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_pre_logits_reproduce_torchvision(name: str, tmp_path: Path) -> None:
    family = SPECS[name].family
    reference = torchvision_model(name)
    path = tmp_path / f"{name}.pth"
    torch.save(reference.state_dict(), path)
    backbone = build(name, weights_path=path).eval()

    size = 224 if family == "vit" else 64
    x = torch.randn(2, 3, size, size)
    head = final_layer(reference, family)
    with torch.no_grad():
        expected = reference(x)
        actual = head(backbone.forward_pre_logits(x))
        final_map = backbone(x)
    last = SPECS[name].feature_levels[-1]
    assert final_map.shape == (2, last.channels, size // last.stride, size // last.stride)
    # Module tooling that resolves names with getattr finds every submodule, pre_logits too.
    state = {**dict(backbone.named_parameters()), **dict(backbone.named_buffers())}
    with torch.no_grad():
        assert torch.equal(functional_call(backbone, state, (x,)), final_map)
    for key in backbone.state_dict():
        backbone.get_submodule(key.rpartition(".")[0])
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)
    if family == "vit":  # at image_size the computation is torchvision's, bit for bit
        assert torch.equal(actual, expected)
    state = backbone.pretrained_classifier_state
    assert state is not None
    assert torch.equal(state["weight"], head.weight)
    assert torch.equal(state["bias"], head.bias)


def test_builtin_classifier_adopts_matching_checkpoint_layer(tmp_path: Path) -> None:
    reference = torchvision_model("resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    backbone = build("resnet18", weights_path=path, num_classes=1000).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(backbone.forward_head(x), reference(x), atol=1e-5, rtol=0)

    # A backbone's own state dict (with its classifier) loads back as is.
    own = tmp_path / "own.pth"
    torch.save(backbone.state_dict(), own)
    again = build("resnet18", weights_path=own, num_classes=1000).eval()
    with torch.no_grad():
        assert torch.equal(again.forward_head(x), backbone.forward_head(x))


def test_safetensors_checkpoint(tmp_path: Path) -> None:
    safetensors_torch = pytest.importorskip("safetensors.torch")
    reference = torchvision_model("mobilenet_v3_small")
    path = tmp_path / "mobilenet.safetensors"
    safetensors_torch.save_file(reference.state_dict(), str(path))
    backbone = build("mobilenet_v3_small", weights_path=path)
    assert torch.equal(
        backbone.state_dict()["pre_logits.0.weight"], reference.state_dict()["classifier.0.weight"]
    )


# -- where weights come from -----------------------------------------------------------------
def test_pretrained_reads_the_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv(weights.OFFLINE_ENV, "1")
    member = weights.torchvision_weights("MobileNet_V3_Small_Weights.IMAGENET1K_V1")
    path = weights.checkpoint_path(member)
    assert path == tmp_path / "hub" / "checkpoints" / "mobilenet_v3_small-047dcff4.pth"
    reference = torchvision_model("mobilenet_v3_small")
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    backbone = build("mobilenet_v3_small", pretrained=True)
    loaded = backbone.state_dict()["features.0.0.weight"]
    assert torch.equal(loaded, reference.state_dict()["features.0.0.weight"])
    assert backbone.pretrained_classifier_state is not None


def test_offline_without_cache_names_the_expected_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv(weights.OFFLINE_ENV, "true")
    expected = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(PretrainedWeightsError) as info:
        build("resnet18", pretrained=True)
    message = str(info.value)
    for part in (str(expected), "ResNet18_Weights.IMAGENET1K_V1", "weights_path", "https://"):
        assert part in message


def test_failed_download_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv(weights.OFFLINE_ENV, raising=False)

    def no_network(url: str, **kwargs: Any) -> Any:
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(PretrainedWeightsError, match="no route to host") as info:
        build("resnet50", pretrained=True, weights="IMAGENET1K_V1")
    message = str(info.value)
    assert "ResNet50_Weights.IMAGENET1K_V1" in message
    assert "resnet50-0676ba61.pth" in message
    assert isinstance(info.value.__cause__, urllib.error.URLError)


def test_weights_members() -> None:
    ref = "ResNet50_Weights.IMAGENET1K_V2"
    assert weights.torchvision_weights(ref) is tvm.ResNet50_Weights.IMAGENET1K_V2
    assert weights.torchvision_weights(ref, "DEFAULT") is tvm.ResNet50_Weights.IMAGENET1K_V2
    assert weights.torchvision_weights(ref, "imagenet1k_v1") is tvm.ResNet50_Weights.IMAGENET1K_V1
    with pytest.raises(ValueError, match="IMAGENET1K_V1, IMAGENET1K_V2"):
        weights.torchvision_weights(ref, "IMAGENET1K_V9")
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        build("resnet50", pretrained=True, weights="IMAGENET1K_V9")
    with pytest.raises(ValueError, match="pretrained=True"):
        build("resnet18", weights="IMAGENET1K_V1")


def test_safetensors_needs_its_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "weights.safetensors"
    path.write_bytes(b"\x00" * 16)
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    with pytest.raises(PretrainedWeightsError, match="pip install safetensors"):
        weights.read_state_dict(path)


def test_no_known_weights_needs_weights_path() -> None:
    backbone = build("resnet18")
    with pytest.raises(PretrainedWeightsError, match="weights_path"):
        weights.load_backbone_weights(backbone, None, BackboneConfig(model_name="resnet18"))


def test_bad_weights_files_are_reported(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(PretrainedWeightsError, match=r"corrupt\.pth") as info:
        build("resnet18", weights_path=corrupt)
    assert info.value.__cause__ is not None

    corrupt_st = tmp_path / "corrupt.safetensors"
    corrupt_st.write_bytes(b"\x00" * 16)
    with pytest.raises(PretrainedWeightsError, match=r"corrupt\.safetensors"):
        build("resnet18", weights_path=corrupt_st)

    with pytest.raises(PretrainedWeightsError, match=r"missing\.pth"):
        build("resnet18", weights_path=tmp_path / "missing.pth")

    other = tmp_path / "resnet34.pth"
    with torch.device("meta"):
        state = tvm.resnet34().state_dict()
    torch.save({k: torch.zeros(v.shape) for k, v in state.items()}, other)
    with pytest.raises(PretrainedWeightsError, match=r"unexpected keys: layer1\.2\."):
        build("resnet18", weights_path=other)


# -- freezing --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "swin_t", "vit_b_32"])
def test_freeze(name: str) -> None:
    backbone = build(name, num_classes=3)
    stages = backbone.stages()
    assert isinstance(backbone.classifier, nn.Linear)
    classifier = trainable(backbone.classifier)

    backbone.freeze(0)
    assert trainable(backbone) == classifier

    backbone.freeze(1)
    expected = trainable(stages[-1]) | classifier
    for module in backbone._pre_logits_modules():
        expected |= trainable(module)
    assert trainable(backbone) == expected
    assert trainable(stages[-1]) == {id(p) for p in stages[-1].parameters()}
    if name == "vit_b_32":
        assert not backbone.class_token.requires_grad
        assert not backbone.encoder.pos_embedding.requires_grad
    if name == "mobilenet_v3_small":
        assert trainable(backbone.get_submodule("pre_logits"))  # the hidden layer

    backbone.freeze(len(stages))
    assert trainable(backbone) == {id(p) for p in backbone.parameters()}
    with pytest.raises(ValueError, match="trainable_stages"):
        backbone.freeze(len(stages) + 1)


# -- config mapping --------------------------------------------------------------------------
def test_drop_rates_map_to_torchvision() -> None:
    with pytest.raises(ValueError, match=r"resnet18.*efficientnet, convnext, swin"):
        build("resnet18", drop_path_rate=0.1)
    with pytest.raises(ValueError, match="vit_b_32"):
        build("vit_b_32", drop_path_rate=0.1)
    with pytest.raises(ValueError, match=r"ModelConfig\.dropout"):
        build("convnext_tiny", drop_rate=0.1)
    build("efficientnet_b0", drop_rate=0.3)  # the head owns the classifier dropout

    vit = build("vit_b_32", drop_rate=0.1)
    assert vit.get_submodule("encoder.dropout").p == 0.1
    convnext = build("convnext_tiny", drop_path_rate=0.3)
    assert convnext.get_submodule("features.7.2.stochastic_depth").p == pytest.approx(0.3)

    # Swin's builders fix the rate; ours applies torchvision's linear schedule.
    swin = build("swin_t", drop_path_rate=0.2)
    with torch.device("meta"):
        reference = tvm.swin_t()  # built with stochastic_depth_prob=0.2
    rates = [m.p for m in swin.modules() if type(m).__name__ == "StochasticDepth"]
    expected = [m.p for m in reference.modules() if type(m).__name__ == "StochasticDepth"]
    assert rates == pytest.approx(expected)


def test_extra_kwargs() -> None:
    with pytest.raises(ValueError, match="width_mult, reduced_tail"):
        build("mobilenet_v3_small", extra_kwargs={"widht_mult": 0.5})
    with pytest.raises(ValueError, match="drop_path_rate"):
        build("convnext_tiny", extra_kwargs={"stochastic_depth_prob": 0.1})
    with pytest.raises(ValueError, match="norm_layer"):
        build("efficientnet_b5", extra_kwargs={"norm_layer": nn.BatchNorm2d})

    with pytest.raises(ValueError, match="3 booleans"):
        build("resnet18", extra_kwargs={"replace_stride_with_dilation": [True]})

    dilated = build("resnet50", extra_kwargs={"replace_stride_with_dilation": [False, True, True]})
    small = build("mobilenet_v3_small", extra_kwargs={"dilated": True, "width_mult": 0.5})
    for backbone, strides in ((dilated, (4, 8, 8, 8)), (small, (4, 8, 16, 16))):
        assert backbone.strides == strides
        with torch.no_grad():
            feats = backbone.eval().forward_multiscale(torch.randn(1, 3, 64, 64))
        for level in backbone.feature_info:
            side = 64 // level.stride
            assert feats[level.name].shape[1:] == (level.channels, side, side)


@pytest.mark.parametrize(
    ("name", "dilation", "output_stride"),
    [("resnet18", [False, True, True], 8), ("resnet34", [False, False, True], 16)],
)
def test_basic_block_resnets_dilate_as_timm_does(
    name: str, dilation: list[bool], output_stride: int
) -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    ours = build(name, extra_kwargs={"replace_stride_with_dilation": dilation}).eval()
    reference = timm.create_model(name, output_stride=output_stride, num_classes=0).eval()
    reference.load_state_dict(ours.state_dict(), strict=True)  # the same parameters
    images = torch.randn(2, 3, 96, 80)
    with torch.no_grad():
        feats = ours.forward_multiscale(images)
        expected = reference.forward_features(images)
    assert ours.strides[-1] == output_stride
    assert feats["feat4"].shape[-2:] == (96 // output_stride, 80 // output_stride)
    torch.testing.assert_close(feats["feat4"], expected)


# -- ViT at other resolutions ----------------------------------------------------------------
def test_vit_interpolates_position_embedding() -> None:
    backbone = build("vit_b_16").eval()
    assert [level.name for level in backbone.feature_info] == ["feat3"]
    pos = backbone.encoder.pos_embedding
    assert backbone.position_embedding(14, 14) is pos
    resized = backbone.position_embedding(2, 3)
    assert resized.shape == (1, 1 + 6, 768)
    assert torch.equal(resized[:, :1], pos[:, :1])
    with torch.no_grad():
        for height, width in ((32, 32), (64, 48)):
            x = torch.randn(1, 3, height, width)
            assert backbone(x).shape == (1, 768, height // 16, width // 16)
            assert backbone.forward_pre_logits(x).shape == (1, 768)
        with pytest.raises(ValueError, match="divisible by the patch size 16"):
            backbone(torch.randn(1, 3, 40, 40))
