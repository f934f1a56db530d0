"""Pretrained weights of plugin backbones: declared with WeightsSpec, loaded by the core."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import torch

from visionatlas import Catalog, hookimpl
from visionatlas.config import BackboneConfig
from visionatlas.errors import PretrainedWeightsError
from visionatlas.models.backbones.base import Backbone
from visionatlas.models.backbones.weights import OFFLINE_ENV, checkpoint_path
from visionatlas.plugins.registrar import Registrar
from visionatlas.specs import BackboneSpec, FeatureLevel, WeightsSpec

NAME = "weighty_cnn"
LEVELS = ((8, 4), (12, 8), (16, 16), (24, 32))  # (channels, stride)


class ToyCNN(Backbone):
    """A stride-4 stem and three stride-2 stages; an optional two-layer classifier."""

    def __init__(self, *, num_classes: int = 0) -> None:
        levels = [
            FeatureLevel(name=f"feat{i}", channels=c, stride=s)
            for i, (c, s) in enumerate(LEVELS, start=1)
        ]
        super().__init__(name=NAME, feature_info=levels)
        channels = [3, *(c for c, _ in LEVELS)]
        strides = [4, 2, 2, 2]
        self.layers = torch.nn.ModuleList(
            torch.nn.Conv2d(a, b, 3, stride=s, padding=1)
            for a, b, s in zip(channels[:-1], channels[1:], strides, strict=True)
        )
        if num_classes:
            self.classifier = torch.nn.Sequential(
                torch.nn.Dropout(0.0), torch.nn.Linear(self.out_channels, num_classes)
            )

    def stages(self) -> list[torch.nn.Module]:
        return list(self.layers)

    def forward_multiscale(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = {}
        for level, layer in zip(self.feature_info, self.layers, strict=True):
            x = torch.relu(layer(x))
            features[level.name] = x
        return features


def build_ignoring_weights(config: BackboneConfig) -> ToyCNN:
    """A builder like many a third party writes: it never looks at ``pretrained``."""
    backbone = ToyCNN(num_classes=config.num_classes)
    backbone.name = config.model_name
    return backbone


def _catalog(weights: str | WeightsSpec | None, *, installed: bool = False) -> Catalog:
    """A catalog with the plugin below; ``installed`` adds the installed task plugins."""

    class WeightyPlugin:
        @hookimpl
        def visionatlas_register_backbones(self, registrar: Registrar) -> None:
            registrar.add_backbone(
                BackboneSpec(
                    name=NAME,
                    builder=build_ignoring_weights,
                    family="toy",
                    out_channels=LEVELS[-1][0],
                    pre_logits_dim=LEVELS[-1][0],
                    feature_levels=tuple(
                        FeatureLevel(name=f"feat{i}", channels=c, stride=s)
                        for i, (c, s) in enumerate(LEVELS, start=1)
                    ),
                    pretrained_weights=weights,
                )
            )

    return Catalog(builtins=installed, entry_points=installed, plugins=[WeightyPlugin()])


def _trained_state(seed: int = 7) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return ToyCNN(num_classes=3).state_dict()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(OFFLINE_ENV, raising=False)
    return tmp_path / "torch" / "hub" / "checkpoints"


def _equal_trunk(backbone: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    own = backbone.state_dict()
    trunk = [k for k in state if not k.startswith("classifier.")]
    return all(torch.equal(own[k], state[k]) for k in trunk)


def test_pretrained_without_declared_weights_fails_naming_the_backbone() -> None:
    catalog = _catalog(None)
    with pytest.raises(PretrainedWeightsError, match=rf"backbone '{NAME}'.*weights_path"):
        catalog.create_backbone(NAME, pretrained=True)
    assert catalog.create_backbone(NAME).weights_source is None


def test_weights_path_is_applied_when_the_builder_ignores_it(tmp_path: Path) -> None:
    state = _trained_state()
    state["classifier.weight"] = state.pop("classifier.1.weight")  # the backbone's own layout
    state["classifier.bias"] = state.pop("classifier.1.bias")
    file = tmp_path / "mine.pth"
    torch.save(state, file)
    backbone = _catalog(None).create_backbone(NAME, weights_path=file)
    assert backbone.weights_source == str(file)
    assert _equal_trunk(backbone, state)
    assert set(backbone.pretrained_classifier_state or {}) == {"weight", "bias"}


def test_declared_weights_download_verify_and_cache(tmp_path: Path, hub_dir: Path) -> None:
    # The published file uses other key names; key_map and classifier_prefix fix them.
    state = _trained_state()
    published = {f"net.{k}": v for k, v in state.items() if not k.startswith("classifier.")}
    published |= {
        "head.weight": state["classifier.1.weight"],
        "head.bias": state["classifier.1.bias"],
    }
    source = tmp_path / "server" / "weighty-1234.pth"
    source.parent.mkdir()
    torch.save(published, source)
    spec = WeightsSpec(
        url=source.as_uri(),
        sha256=_sha256(source),
        key_map={"net.": ""},
        classifier_prefix="head.",
        name="SYNTH1K",
    )
    catalog = _catalog(spec)
    assert checkpoint_path(spec) == hub_dir / "weighty-1234.pth"

    first = catalog.create_backbone(NAME, pretrained=True, weights="SYNTH1K")
    cached = hub_dir / "weighty-1234.pth"
    assert first.weights_source == str(cached)
    assert _sha256(cached) == spec.sha256
    assert _equal_trunk(first, state)
    assert torch.equal(first.pretrained_classifier_state["weight"], state["classifier.1.weight"])
    assert [p.name for p in hub_dir.iterdir()] == ["weighty-1234.pth"]  # no partial file left

    source.unlink()  # the second build must come from the cache
    second = catalog.create_backbone(NAME, pretrained=True)
    assert _equal_trunk(second, state)
    # the catalog metadata shows the declared weights
    spec_dict = catalog.get_backbone(NAME).as_dict()["pretrained_weights"]
    assert (spec_dict["file_name"], spec_dict["name"]) == ("weighty-1234.pth", "SYNTH1K")


def test_a_download_with_the_wrong_checksum_is_not_kept(tmp_path: Path, hub_dir: Path) -> None:
    source = tmp_path / "w.pth"
    torch.save(_trained_state(), source)
    spec = WeightsSpec(url=source.as_uri(), sha256="0" * 64)
    with pytest.raises(PretrainedWeightsError, match=r"sha256 [0-9a-f]{64}.*declares 0{64}"):
        _catalog(spec).create_backbone(NAME, pretrained=True)
    assert not hub_dir.exists() or list(hub_dir.iterdir()) == []


def test_a_cached_file_with_the_wrong_checksum_is_named(tmp_path: Path, hub_dir: Path) -> None:
    hub_dir.mkdir(parents=True)
    torch.save(_trained_state(), hub_dir / "w.pth")
    spec = WeightsSpec(url="https://example.invalid/w.pth", sha256="f" * 64)
    with pytest.raises(PretrainedWeightsError, match=rf"{hub_dir / 'w.pth'} has sha256"):
        _catalog(spec).create_backbone(NAME, pretrained=True)


def test_offline_error_names_the_url_and_the_file_location(
    hub_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(OFFLINE_ENV, "1")
    spec = WeightsSpec(url="https://example.invalid/models/w-abc.pth", file_name="w-v2.pth")
    with pytest.raises(PretrainedWeightsError) as info:
        _catalog(spec).create_backbone(NAME, pretrained=True)
    message = str(info.value)
    assert "https://example.invalid/models/w-abc.pth" in message
    assert str(hub_dir / "w-v2.pth") in message
    assert f"backbone '{NAME}'" in message


def test_an_unknown_weights_tag_is_refused(hub_dir: Path) -> None:
    spec = WeightsSpec(url="https://example.invalid/w.pth", name="IMAGENET1K")
    with pytest.raises(PretrainedWeightsError, match=r"no weights 'COCO'.*'IMAGENET1K'"):
        _catalog(spec).create_backbone(NAME, pretrained=True, weights="COCO")


def test_models_built_on_a_plugin_backbone_load_its_weights(tmp_path: Path) -> None:
    torch.manual_seed(3)
    state = ToyCNN().state_dict()
    file = tmp_path / "w.pth"
    torch.save(state, file)
    catalog = _catalog(None, installed=True)
    model = catalog.create_model("classification", NAME, {"weights_path": str(file)}, 4)
    assert _equal_trunk(model.backbone, state)
    with pytest.raises(PretrainedWeightsError, match=NAME):
        catalog.create_model("regression", NAME, {"pretrained": True}, 1)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (WeightsSpec(url="ftp://host/w.pth"), r"url must start with https://"),
        (WeightsSpec(url="https://host/w.pth", sha256="abc"), r"sha256 must be 64"),
        (WeightsSpec(url="https://host/"), r"plain file name"),
        ("resnet50", r"torchvision weights reference"),
    ],
)
def test_malformed_weights_are_reported(weights: str | WeightsSpec, message: str) -> None:
    catalog = _catalog(weights)
    assert NAME not in catalog.list_backbones()
    (report,) = [r for r in catalog.list_plugins() if r.name.endswith("WeightyPlugin")]
    assert [p.kind for p in report.errors] == ["malformed"]
    assert re.search(message, report.errors[0].message)
