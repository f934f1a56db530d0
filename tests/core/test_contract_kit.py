"""The contract kit catches planted bugs: backbones and architectures that lie about themselves.

Each backbone below is a tiny CNN registered by an in-process plugin whose spec says one
thing while the module does another; ``check_backbone`` (and ``check_plugin(deep=True)``)
must fail naming the backbone, the declared value and the measured one.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import pytest
import torch
from torch import Tensor, nn

from visionatlas import ArchitectureSpec, Catalog, ModelConfig, Registrar, TaskSpec, hookimpl
from visionatlas.config import BackboneConfig
from visionatlas.models.backbones.base import Backbone
from visionatlas.specs import BackboneSpec, FeatureLevel
from visionatlas.testing import (
    BackboneCheck,
    CheckFailed,
    check_architecture,
    check_backbone,
    check_plugin,
    isolated_catalog,
)

PLUGIN = "contract-kit"
STEM = 8
CHANNELS = (8, 12, 16, 24)
STRIDES = (4, 8, 16, 32)


def conv_params(cin: int, cout: int) -> int:
    return 9 * cin * cout + cout  # a 3x3 convolution with bias


def trunk_params(channels: tuple[int, ...] = CHANNELS) -> int:
    widths = (3, STEM, *channels)
    return sum(conv_params(a, b) for a, b in pairwise(widths))


def levels(channels: tuple[int, ...], strides: tuple[int, ...]) -> tuple[FeatureLevel, ...]:
    return tuple(
        FeatureLevel(name=f"feat{i}", channels=c, stride=s)
        for i, (c, s) in enumerate(zip(channels, strides, strict=True), start=1)
    )


class KitNet(Backbone):
    """A stride-2 stem and four stride-2 stages (strides 4..32); honest ``feature_info``."""

    def __init__(self, name: str, *, channels: tuple[int, ...], num_classes: int) -> None:
        super().__init__(name=name, feature_info=levels(channels, STRIDES))
        self.stem = nn.Conv2d(3, STEM, 3, stride=2, padding=1)
        self.layers = nn.ModuleList(
            nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in pairwise((STEM, *channels))
        )
        if num_classes:
            self.classifier = nn.Linear(self.pre_logits_dim, num_classes)

    def stages(self) -> list[nn.Module]:
        return [self.stem, *self.layers]

    def forward_multiscale(self, x: Tensor) -> dict[str, Tensor]:
        x = torch.relu(self.stem(x))
        features = {}
        for level, layer in zip(self.feature_info, self.layers, strict=True):
            x = torch.relu(layer(x))
            features[level.name] = x
        return features


class MissingStage(KitNet):
    """``stages()`` leaves out the last layer: freezing can never train it."""

    def stages(self) -> list[nn.Module]:
        return [self.stem, *self.layers[:-1]]


class FreezesFromTheFront(KitNet):
    """``freeze(k)`` keeps the *first* ``k`` stages trainable instead of the last ``k``."""

    def freeze(self, trainable_stages: int = 0) -> None:
        self.requires_grad_(False)
        for stage in self.stages()[:trainable_stages]:
            stage.requires_grad_(True)
        if trainable_stages:
            self.pre_logits.requires_grad_(True)


def builder(
    cls: type[KitNet] = KitNet,
    *,
    channels: tuple[int, ...] = CHANNELS,
    honour_num_classes: bool = True,
) -> Callable[[BackboneConfig], KitNet]:
    def build(config: BackboneConfig) -> KitNet:
        num_classes = config.num_classes if honour_num_classes else 0
        return cls(config.model_name, channels=channels, num_classes=num_classes)

    return build


def spec(
    name: str,
    build: Callable[[BackboneConfig], KitNet],
    *,
    channels: tuple[int, ...] = CHANNELS,
    strides: tuple[int, ...] = STRIDES,
    num_params: int | None = trunk_params(),
) -> BackboneSpec:
    return BackboneSpec(
        name=name,
        builder=build,
        family="kit",
        out_channels=channels[-1],
        pre_logits_dim=channels[-1],
        num_params=num_params,
        feature_levels=levels(channels, strides),
        default_input_size=64,
    )


LYING_CHANNELS = (8, 12, 16, 128)  # the module's last level has 160
GOOD = "kit_good"
BACKBONES = {
    GOOD: spec(GOOD, builder()),
    "kit_channels": spec(
        "kit_channels",
        builder(channels=(8, 12, 16, 160)),
        channels=LYING_CHANNELS,
        num_params=None,
    ),
    "kit_strides": spec("kit_strides", builder(), strides=(2, 4, 8, 16)),
    "kit_no_classes": spec("kit_no_classes", builder(honour_num_classes=False)),
    "kit_params": spec("kit_params", builder(), num_params=trunk_params() + 7),
    "kit_missing_stage": spec("kit_missing_stage", builder(MissingStage)),
    "kit_front_freeze": spec("kit_front_freeze", builder(FreezesFromTheFront)),
}


class Scorer(nn.Module):
    """One score per image: the architecture of a task without classes."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 4, 1)
        self.head = nn.Linear(4, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x).mean(dim=(2, 3)))


def build_scorer(config: ModelConfig, num_classes: int) -> Scorer:
    if num_classes != 1:
        raise ValueError(f"a scorer has one output, got num_classes={num_classes}")
    model = Scorer()
    model.body.requires_grad_(not config.freeze_backbone)
    return model


def build_five_tags(config: ModelConfig, num_classes: int) -> nn.Module:
    """Ignores ``num_classes``: always five outputs."""
    return nn.Sequential(nn.Conv2d(3, 5, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())


class KitPlugin:
    """Registers the given backbones, a task without classes and its ``scorer``, and a
    task with classes and its ``five_tags`` (which ignores ``num_classes``) if asked."""

    def __init__(self, backbones: dict[str, BackboneSpec], *, five_tags: bool = True) -> None:
        self.backbones = backbones
        self.five_tags = five_tags

    @hookimpl
    def visionatlas_register_tasks(self, registrar: Registrar) -> None:
        registrar.add_task(
            TaskSpec(name="kit_scoring", display_name="Scoring", uses_num_classes=False)
        )
        registrar.add_task(TaskSpec(name="kit_tagging", display_name="Tagging"))

    @hookimpl
    def visionatlas_register_backbones(self, registrar: Registrar) -> None:
        for backbone in self.backbones.values():
            registrar.add_backbone(backbone)

    @hookimpl
    def visionatlas_register_architectures(self, registrar: Registrar) -> None:
        registrar.add_architecture(
            ArchitectureSpec(
                task="kit_scoring",
                name="scorer",
                builder=build_scorer,
                default_num_classes=1,
                num_params=16 + 5,
            )
        )
        if self.five_tags:
            registrar.add_architecture(
                ArchitectureSpec(task="kit_tagging", name="five_tags", builder=build_five_tags)
            )


@pytest.fixture
def kit() -> Catalog:
    """Every backbone above; discovery is lazy, so each test gets its plugin fresh."""
    return Catalog(builtins=False, entry_points=False, plugins=[(KitPlugin(BACKBONES), PLUGIN)])


# -- check_backbone ----------------------------------------------------------------------------


def test_a_correct_backbone_passes(kit: Catalog) -> None:
    result = check_backbone(GOOD, catalog=kit)
    assert result == BackboneCheck(
        name=GOOD,
        input_shape=(2, 3, 64, 64),
        feature_levels=levels(CHANNELS, STRIDES),
        out_channels=24,
        pre_logits_dim=24,
        num_params=trunk_params(),
        num_stages=5,
    )
    other_size = check_backbone(GOOD, catalog=kit, input_size=(96, 128))
    assert other_size.input_shape == (2, 3, 96, 128)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("kit_channels", r"backbone 'kit_channels': .*feat4 channels: declared 128, measured 160"),
        (
            "kit_strides",
            r"backbone 'kit_strides': .*feat1 stride: declared 2, measured 4 \(a 64x64 input "
            r"gives a 16x16 map\); feat2 stride: declared 4, measured 8",
        ),
        (
            "kit_no_classes",
            r"backbone 'kit_no_classes': built with BackboneConfig\(num_classes=3\) it has no "
            r"classifier .*ignores num_classes",
        ),
        (
            "kit_params",
            rf"backbone 'kit_params': the spec says num_params={trunk_params() + 7:,}, but the "
            rf"backbone built with num_classes=0 has {trunk_params():,} parameters "
            r"\(difference -7\)",
        ),
        (
            "kit_missing_stage",
            r"backbone 'kit_missing_stage': parameters in none of its 4 stages nor the "
            r"pre-logits layers, .*: layers\.3\.bias, layers\.3\.weight",
        ),
        (
            "kit_front_freeze",
            r"backbone 'kit_front_freeze': freeze\(1\) should leave exactly the last 1 of its 5 "
            r"stages and the pre-logits layers trainable; also trainable: stem\.bias, "
            r"stem\.weight; frozen: layers\.3\.bias, layers\.3\.weight",
        ),
    ],
)
def test_planted_backbone_bugs_fail(kit: Catalog, name: str, expected: str) -> None:
    with pytest.raises(CheckFailed, match=expected):
        check_backbone(name, catalog=kit)


def test_strides_may_round_up(kit: Catalog) -> None:
    # 72 is no multiple of 32: the maps are 18, 9, 5 and 3 px (72/16 and 72/32 rounded up)
    result = check_backbone(GOOD, catalog=kit, input_size=72)
    assert result.feature_levels == levels(CHANNELS, STRIDES)


def test_unknown_backbone_fails_with_check_failed(kit: Catalog) -> None:
    with pytest.raises(CheckFailed, match=r"backbone 'nope': looking it up failed"):
        check_backbone("nope", catalog=kit)


# -- check_plugin(deep=True) -------------------------------------------------------------------


def test_deep_plugin_check_lists_every_failure(kit: Catalog) -> None:
    assert check_plugin(PLUGIN, catalog=kit).name == PLUGIN  # metadata only: fine
    with pytest.raises(CheckFailed) as failure:
        check_plugin(PLUGIN, catalog=kit, deep=True)
    message = str(failure.value)
    assert message.startswith(f"plugin {PLUGIN!r}")
    assert "7 of its backbones and architectures fail" in message
    for name in set(BACKBONES) - {GOOD}:
        assert f"\n  - backbone {name!r}: " in message
    assert "\n  - kit_tagging/five_tags: built with num_classes=3" in message
    assert "kit_good" not in message
    assert "kit_scoring" not in message


def test_deep_plugin_check_passes_a_correct_plugin() -> None:
    plugin = KitPlugin({GOOD: BACKBONES[GOOD]}, five_tags=False)
    catalog = Catalog(builtins=False, entry_points=False, plugins=[(plugin, PLUGIN)])
    report = check_plugin(PLUGIN, catalog=catalog, deep=True)
    assert report.registered["backbone"] == [GOOD]
    assert report.registered["architecture"] == ["kit_scoring/scorer"]


# -- check_architecture ------------------------------------------------------------------------


def test_a_task_without_classes_is_not_built_with_three(kit: Catalog) -> None:
    result = check_architecture("kit_scoring", "scorer", catalog=kit)
    assert result.output_shape == (2, 1)
    assert result.default_num_params == result.num_params == 21
    with pytest.raises(CheckFailed, match=r"cannot build kit_scoring/scorer .*num_classes=3"):
        check_architecture("kit_scoring", "scorer", catalog=kit, num_classes=3)
    configured = check_architecture("kit_scoring", "scorer", catalog=kit, config=ModelConfig())
    assert configured.output_shape == (2, 1)


def test_an_architecture_that_ignores_num_classes_fails(kit: Catalog) -> None:
    with pytest.raises(
        CheckFailed,
        match=r"kit_tagging/five_tags: built with num_classes=3, but its output \(2, 5\) has 5 "
        r"in dimension 1",
    ):
        check_architecture("kit_tagging", "five_tags", catalog=kit)


def test_a_generic_architecture_on_a_plugin_backbone() -> None:
    pytest.importorskip("visionatlas_segmentation")
    plugin = KitPlugin({GOOD: BACKBONES[GOOD]}, five_tags=False)
    with isolated_catalog((plugin, PLUGIN), entry_points=True) as catalog:
        assert GOOD in catalog.get_architecture("segmentation", "fcn").compatible_backbones
        result = check_architecture("segmentation", "fcn", config={"backbone": GOOD})
    assert result.output_shape == (2, 3, 64, 64)
    # num_params is the spec's: that of the default config (on ResNet-50), built on meta
    assert result.default_num_params == catalog.get_architecture("segmentation", "fcn").num_params
    assert result.num_params < 100_000
