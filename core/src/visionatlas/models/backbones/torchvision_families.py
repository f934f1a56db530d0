"""Builders of the torchvision backbones: one per family, taking a ``BackboneConfig``.

The config's ``model_name`` is the torchvision builder name (``resnet50``, ``swin_v2_t``,
...). The backbone modules themselves are in
:mod:`visionatlas.models.backbones.torchvision_backbones` (their names are also importable
from here).

Config mapping: ``drop_rate`` is the trunk dropout of ViT and Swin (torchvision's
``dropout``); EfficientNet and MobileNetV3 only have classifier dropout, which the head owns,
so there it is not used; ResNet and ConvNeXt have no dropout and refuse a non-zero value.
``drop_path_rate`` is passed as is to EfficientNet, ConvNeXt and Swin (so the default 0.0
turns stochastic depth off, unlike torchvision's training defaults); the other families
refuse a non-zero value. ``extra_kwargs`` go to the torchvision builder, checked against a
per-family list first (MobileNetV3 and ConvNeXt would silently swallow unknown keys).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from visionatlas.config import BackboneConfig
from visionatlas.models.backbones.base import Backbone
from visionatlas.models.backbones.torchvision_backbones import (
    STAGE_ENDS,
    ConvNeXtBackbone,
    EfficientNetBackbone,
    MobileNetV3Backbone,
    ResNetBackbone,
    SwinBackbone,
    TorchvisionBackbone,
    ViTBackbone,
)

__all__ = [
    "STAGE_ENDS",
    "ConvNeXtBackbone",
    "EfficientNetBackbone",
    "MobileNetV3Backbone",
    "ResNetBackbone",
    "SwinBackbone",
    "TorchvisionBackbone",
    "ViTBackbone",
    "build_convnext",
    "build_efficientnet",
    "build_mobilenet_v3",
    "build_resnet",
    "build_swin",
    "build_vit",
]


# -- building ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Family:
    name: str
    models: tuple[str, ...]
    accepted_kwargs: tuple[str, ...]
    dropout_kwarg: str | None = None
    drop_path_kwarg: str | None = None
    classifier_dropout: bool = False
    """Whether torchvision's only dropout is the classifier's (owned by the head here)."""
    drop_path_schedule: bool = False
    """Whether stochastic depth is set after building (the builder hard-codes it)."""

    @property
    def has_drop_path(self) -> bool:
        return self.drop_path_kwarg is not None or self.drop_path_schedule


_RESNET = _Family(
    "resnet",
    (
        "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
        "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
    ),
    ("zero_init_residual", "groups", "width_per_group", "replace_stride_with_dilation",
     "norm_layer"),
)  # fmt: skip
_EFFICIENTNET = _Family(
    "efficientnet",
    (*(f"efficientnet_b{i}" for i in range(8)),
     "efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l"),
    ("norm_layer",),
    drop_path_kwarg="stochastic_depth_prob",
    classifier_dropout=True,
)  # fmt: skip
_MOBILENET_V3 = _Family(
    "mobilenet_v3",
    ("mobilenet_v3_small", "mobilenet_v3_large"),
    ("width_mult", "reduced_tail", "dilated", "norm_layer", "block"),
    classifier_dropout=True,
)
_CONVNEXT = _Family(
    "convnext",
    ("convnext_tiny", "convnext_small", "convnext_base", "convnext_large"),
    ("layer_scale", "block", "norm_layer"),
    drop_path_kwarg="stochastic_depth_prob",
)
_SWIN = _Family(
    "swin",
    ("swin_t", "swin_s", "swin_b", "swin_v2_t", "swin_v2_s", "swin_v2_b"),
    ("mlp_ratio", "attention_dropout", "norm_layer", "block", "downsample_layer"),
    dropout_kwarg="dropout",
    drop_path_schedule=True,
)
_VIT = _Family(
    "vit",
    ("vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32"),
    ("image_size", "attention_dropout", "representation_size", "norm_layer",
     "conv_stem_configs"),
    dropout_kwarg="dropout",
)  # fmt: skip
_FAMILIES = (_RESNET, _EFFICIENTNET, _MOBILENET_V3, _CONVNEXT, _SWIN, _VIT)
_CONFIG_FIELDS = {
    "num_classes": "BackboneConfig.num_classes",
    "weights": "BackboneConfig.pretrained / weights / weights_path",
    "progress": "BackboneConfig.pretrained / weights_path",
    "stochastic_depth_prob": "BackboneConfig.drop_path_rate",
}


def _supporting(attribute: str) -> str:
    return ", ".join(f.name for f in _FAMILIES if getattr(f, attribute))


def _set_drop_path(model: nn.Module, rate: float) -> None:
    """Give the model's ``StochasticDepth`` layers, in order, the rates ``rate * i / (n - 1)``.

    This is torchvision's linear schedule over blocks (Swin), for builders that fix the rate.
    """
    from torchvision.ops import StochasticDepth

    layers = [m for m in model.modules() if isinstance(m, StochasticDepth)]
    for index, layer in enumerate(layers):
        layer.p = rate * index / max(len(layers) - 1, 1)


def _builder_kwargs(family: _Family, config: BackboneConfig) -> dict[str, Any]:
    """Keyword arguments for the torchvision builder, validated against the family."""
    name = config.model_name
    kwargs = dict(config.extra_kwargs)
    for key in kwargs:
        if key in _CONFIG_FIELDS or key == family.dropout_kwarg:
            field = _CONFIG_FIELDS.get(key, "BackboneConfig.drop_rate")
            raise ValueError(f"extra_kwargs of backbone {name!r} must not set {key!r}; use {field}")
        if key == "dropout" and family.classifier_dropout:
            raise ValueError(
                f"extra_kwargs of backbone {name!r} must not set 'dropout': torchvision uses "
                f"it only in the {family.name} classifier, which the head replaces; set the "
                "head's dropout (ModelConfig.dropout) instead"
            )
        if key not in family.accepted_kwargs:
            raise ValueError(
                f"unknown extra_kwargs key {key!r} for backbone {name!r}; the {family.name} "
                f"builders accept: {', '.join(family.accepted_kwargs)}"
            )
    if config.drop_rate:
        if family.dropout_kwarg is not None:
            kwargs[family.dropout_kwarg] = config.drop_rate
        elif not family.classifier_dropout:
            raise ValueError(
                f"backbone {name!r} has no dropout layer, so drop_rate={config.drop_rate} "
                "cannot be applied; set the head's dropout (ModelConfig.dropout) instead. "
                f"Families with trunk dropout: {_supporting('dropout_kwarg')}"
            )
    if family.drop_path_kwarg is not None:
        kwargs[family.drop_path_kwarg] = config.drop_path_rate
    elif config.drop_path_rate and not family.drop_path_schedule:
        raise ValueError(
            f"backbone {name!r} has no stochastic depth, so drop_path_rate="
            f"{config.drop_path_rate} cannot be applied; families that support it: "
            f"{_supporting('has_drop_path')}"
        )
    return kwargs


def _weights_ref(name: str) -> str:
    from torchvision.models import get_model_weights

    return f"{get_model_weights(name).__name__}.DEFAULT"


def _build_torchvision(
    family: _Family, config: BackboneConfig, prepare: Callable[[dict[str, Any]], None] | None = None
) -> nn.Module:
    name = config.model_name
    if name not in family.models:
        raise ValueError(
            f"unknown {family.name} backbone {name!r}; this builder makes: "
            f"{', '.join(family.models)}"
        )
    if config.weights is not None and not config.pretrained and config.weights_path is None:
        raise ValueError(
            f"weights={config.weights!r} selects which pretrained weights backbone {name!r} "
            "loads; set pretrained=True as well"
        )
    kwargs = _builder_kwargs(family, config)
    if prepare is not None:
        prepare(kwargs)
    import torchvision.models

    builder = getattr(torchvision.models, name)
    try:
        model: nn.Module = builder(weights=None, num_classes=1, **kwargs)
    except (TypeError, ValueError, AssertionError, NotImplementedError) as err:
        raise ValueError(
            f"torchvision.models.{name} rejected extra_kwargs {sorted(config.extra_kwargs)}: "
            f"{err}. Keys the {family.name} builders take: "
            f"{', '.join(family.accepted_kwargs)} (some models fix some of them)"
        ) from err
    return model


def _finish(backbone: TorchvisionBackbone, config: BackboneConfig) -> TorchvisionBackbone:
    """Add the built-in classifier and load pretrained weights when asked."""
    if config.num_classes:
        from visionatlas.models.deferred_init import deferred_init

        with deferred_init(enabled=False):  # no weights may cover a new classifier
            backbone.classifier = nn.Linear(backbone.pre_logits_dim, config.num_classes)
    if config.pretrained or config.weights_path is not None:
        from visionatlas.models.backbones.weights import load_backbone_weights

        load_backbone_weights(
            backbone,
            _weights_ref(config.model_name),
            config,
            classifier_prefix=backbone.checkpoint_classifier_prefix,
            key_map=backbone.checkpoint_key_map,
        )
    return backbone


_BASIC_BLOCK_RESNETS = ("resnet18", "resnet34")


def build_resnet(config: BackboneConfig) -> Backbone:
    """ResNet-18/34/50/101/152, ResNeXt and Wide ResNet.

    ``replace_stride_with_dilation`` works for every one: torchvision dilates the bottleneck
    ResNets itself; ResNet-18/34 (basic blocks, which torchvision refuses to dilate) are
    dilated after building, as timm does (the first block of a stage keeps the stage
    before's dilation in its first convolution). Parameter shapes do not change.
    """
    dilation = list(config.extra_kwargs.get("replace_stride_with_dilation") or ())
    basic = config.model_name in _BASIC_BLOCK_RESNETS and any(dilation)
    if basic:
        kwargs = {
            k: v for k, v in config.extra_kwargs.items() if k != "replace_stride_with_dilation"
        }
        model = _build_torchvision(_RESNET, config.model_copy(update={"extra_kwargs": kwargs}))
        _dilate_basic_blocks(model, dilation)
    else:
        model = _build_torchvision(_RESNET, config)
    return _finish(ResNetBackbone(model, name=config.model_name, dilation=dilation), config)


def _dilate_basic_blocks(model: nn.Module, dilation: Sequence[bool]) -> None:
    """Turn the stride of ``layer2``..``layer4`` (where ``dilation`` says so) into dilation."""
    if len(dilation) != 3 or not all(isinstance(flag, bool) for flag in dilation):
        raise ValueError(
            f"replace_stride_with_dilation must be 3 booleans (layer2, layer3, layer4), got "
            f"{list(dilation)!r}"
        )
    current = 1
    for name, dilate in zip(("layer2", "layer3", "layer4"), dilation, strict=True):
        previous, current = current, current * 2 if dilate else current
        if current == 1:
            continue
        for index, block in enumerate(getattr(model, name)):
            first = previous if index == 0 else current
            for conv, rate in ((block.conv1, first), (block.conv2, current)):
                conv.dilation, conv.padding = (rate, rate), (rate, rate)
            if dilate:  # a stage after a dilated one keeps its stride, at the dilation reached
                block.conv1.stride = (1, 1)
                if block.downsample is not None:
                    block.downsample[0].stride = (1, 1)


def build_efficientnet(config: BackboneConfig) -> Backbone:
    """EfficientNet B0-B7 and EfficientNetV2 S/M/L."""
    model = _build_torchvision(_EFFICIENTNET, config)
    return _finish(EfficientNetBackbone(model, name=config.model_name), config)


def build_mobilenet_v3(config: BackboneConfig) -> Backbone:
    """MobileNetV3 Small and Large."""
    model = _build_torchvision(_MOBILENET_V3, config)
    dilated = bool(config.extra_kwargs.get("dilated", False))
    return _finish(MobileNetV3Backbone(model, name=config.model_name, dilated=dilated), config)


def build_convnext(config: BackboneConfig) -> Backbone:
    """ConvNeXt Tiny/Small/Base/Large."""
    model = _build_torchvision(_CONVNEXT, config)
    return _finish(ConvNeXtBackbone(model, name=config.model_name), config)


def build_swin(config: BackboneConfig) -> Backbone:
    """Swin Transformer T/S/B and Swin V2 T/S/B."""
    model = _build_torchvision(_SWIN, config)
    _set_drop_path(model, config.drop_path_rate)
    return _finish(SwinBackbone(model, name=config.model_name), config)


def build_vit(config: BackboneConfig) -> Backbone:
    """ViT-B/16, B/32, L/16, L/32.

    With ``weights`` naming a member trained at another resolution (the SWAG end-to-end
    weights), the model is built at that member's size unless ``extra_kwargs`` sets
    ``image_size``.
    """

    def image_size_of_weights(kwargs: dict[str, Any]) -> None:
        if config.weights is None or "image_size" in kwargs:
            return
        from visionatlas.models.backbones.weights import torchvision_weights

        weights = torchvision_weights(_weights_ref(config.model_name), config.weights)
        kwargs["image_size"] = int(weights.meta["min_size"][0])

    model = _build_torchvision(_VIT, config, image_size_of_weights)
    return _finish(ViTBackbone(model, name=config.model_name), config)
