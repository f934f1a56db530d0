"""Backbones wrapping torchvision classification models.

Each backbone keeps torchvision's own submodule names, so its ``state_dict`` keys are those
of the torchvision model minus the classifier; pre-logits layers that torchvision keeps in
its classifier (MobileNetV3's hidden layer, ConvNeXt's final norm) live under
``pre_logits``. Builders take a :class:`~visionatlas.config.BackboneConfig` whose
``model_name`` is the torchvision builder name (``resnet50``, ``swin_v2_t``, ...).

Multi-scale levels are ``feat1`` ... ``feat4`` at strides 4, 8, 16, 32; level ``i`` is the
output of the last block at that stride, and ``feat4`` is the final feature map. ViT has a
single level (see :class:`ViTBackbone`).

Config mapping: ``drop_rate`` is the trunk dropout of ViT and Swin (torchvision's
``dropout``); EfficientNet and MobileNetV3 only have classifier dropout, which the head owns,
so there it is not used; ResNet and ConvNeXt have no dropout and refuse a non-zero value.
``drop_path_rate`` is passed as is to EfficientNet, ConvNeXt and Swin (so the default 0.0
turns stochastic depth off, unlike torchvision's training defaults); the other families
refuse a non-zero value. ``extra_kwargs`` go to the torchvision builder, checked against a
per-family list first (MobileNetV3 and ConvNeXt would silently swallow unknown keys).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from visionatlas.config import BackboneConfig
from visionatlas.models.backbones.base import Backbone
from visionatlas.specs import FeatureLevel

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

LEVEL_NAMES = ("feat1", "feat2", "feat3", "feat4")
_LEVEL_BY_STRIDE = {4: "feat1", 8: "feat2", 16: "feat3", 32: "feat4"}

STAGE_ENDS: dict[str, tuple[int, int, int, int, int]] = {
    **dict.fromkeys(
        [f"efficientnet_b{i}" for i in range(8)] + ["efficientnet_v2_m", "efficientnet_v2_l"],
        (2, 3, 4, 6, 9),
    ),
    "efficientnet_v2_s": (2, 3, 4, 6, 8),
    "mobilenet_v3_small": (1, 2, 4, 9, 13),
    "mobilenet_v3_large": (2, 4, 7, 13, 17),
    **dict.fromkeys(
        ["convnext_tiny", "convnext_small", "convnext_base", "convnext_large"], (1, 2, 4, 6, 8)
    ),
    **dict.fromkeys(
        ["swin_t", "swin_s", "swin_b", "swin_v2_t", "swin_v2_s", "swin_v2_b"], (1, 2, 4, 6, 8)
    ),
}
"""Stage boundaries in each model's ``features``: ``(stem_end, end1, end2, end3, end4)``.

The stem is ``features[:stem_end]``, stage ``i`` is ``features[end(i-1):end(i)]`` and level
``feat<i>`` is the output of ``features[end(i) - 1]``. ``end4 == len(features)``.
"""


# -- shared helpers ----------------------------------------------------------------------------
def _group(**members: nn.Module | nn.Parameter) -> nn.Module:
    """An unregistered container over existing modules and parameters (for ``stages()``)."""
    group = nn.Module()
    for key, member in members.items():
        if isinstance(member, nn.Parameter):
            group.register_parameter(key, member)
        else:
            group.add_module(key, member)
    return group


def _out_channels(module: nn.Module) -> int:
    """Output width of a block: the last ``Conv2d``/``Linear`` registered in it."""
    for sub in reversed(list(module.modules())):
        if isinstance(sub, nn.Conv2d):
            return int(sub.out_channels)
        if isinstance(sub, nn.Linear):
            return int(sub.out_features)
    raise ValueError(f"cannot tell the output channels of {type(module).__name__}")


def _levels(channels: Sequence[int], strides: Sequence[int]) -> list[FeatureLevel]:
    return [
        FeatureLevel(name=name, channels=c, stride=s)
        for name, c, s in zip(LEVEL_NAMES, channels, strides, strict=True)
    ]


class _ChannelsFirstPreLogits(nn.Sequential):
    """Pre-logits layers written for ``(N, C, 1, 1)`` maps that also take the flat ``(N, C)``."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            x = x[:, :, None, None]
        for layer in self:
            x = layer(x)
        return x


class TorchvisionBackbone(Backbone):
    """A backbone cut from a torchvision classifier.

    ``checkpoint_classifier_prefix`` names the torchvision final layer (``"fc."``) and
    ``checkpoint_key_map`` renames torchvision pre-logits keys to ours; the weights loader
    uses both.

    Pre-logits layers, if any, are the submodule ``pre_logits``, so checkpoint keys map
    as ``classifier.0.*`` -> ``pre_logits.0.*``.
    """

    checkpoint_classifier_prefix: str = ""
    checkpoint_key_map: Mapping[str, str] = {}


class _SequentialStagesBackbone(TorchvisionBackbone):
    """A backbone whose trunk is torchvision's ``features`` Sequential, cut by STAGE_ENDS."""

    def __init__(
        self,
        features: nn.Sequential,
        stage_ends: Sequence[int],
        *,
        name: str,
        strides: Sequence[int] = (4, 8, 16, 32),
        pre_logits_dim: int | None = None,
    ) -> None:
        ends = tuple(stage_ends)
        if len(ends) != 5 or ends[-1] != len(features) or list(ends) != sorted(set(ends)):
            raise ValueError(
                f"stage table {ends} of backbone {name!r} does not fit its features "
                f"({len(features)} blocks); expected 5 increasing ends, the last "
                f"{len(features)}"
            )
        channels = [_out_channels(features[a:b]) for a, b in itertools.pairwise(ends)]
        super().__init__(
            name=name,
            feature_info=_levels(channels, strides),
            pre_logits_dim=pre_logits_dim,
        )
        self.features = features
        self.stage_ends = ends
        self._level_at = {
            end - 1: lvl.name for end, lvl in zip(ends[1:], self.feature_info, strict=True)
        }

    def stages(self) -> list[nn.Module]:
        ends = self.stage_ends
        groups: list[nn.Module] = [self.features[: ends[0]]]
        groups.extend(self.features[a:b] for a, b in itertools.pairwise(ends))
        return groups

    def forward_multiscale(self, x: Tensor) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for index, block in enumerate(self.features):
            x = block(x)
            level = self._level_at.get(index)
            if level is not None:
                out[level] = x
        return out


# -- families ----------------------------------------------------------------------------------
class ResNetBackbone(TorchvisionBackbone):
    """ResNet, ResNeXt and Wide ResNet: ``conv1``/``bn1`` stem, then ``layer1`` ... ``layer4``.

    ``replace_stride_with_dilation`` (an ``extra_kwargs`` entry) keeps later levels at the
    stride of the level before, as ``feature_info`` then reports.
    """

    checkpoint_classifier_prefix = "fc."

    def __init__(self, model: Any, *, name: str, dilation: Sequence[bool] = ()) -> None:
        layers: list[nn.Sequential] = [model.layer1, model.layer2, model.layer3, model.layer4]
        strides = [4]
        for dilated in [*dilation, False, False, False][:3]:
            strides.append(strides[-1] if dilated else strides[-1] * 2)
        channels = [_out_channels(layer[-1]) for layer in layers]
        super().__init__(name=name, feature_info=_levels(channels, strides))
        self.conv1: nn.Module = model.conv1
        self.bn1: nn.Module = model.bn1
        self.relu: nn.Module = model.relu
        self.maxpool: nn.Module = model.maxpool
        self.layer1: nn.Sequential = layers[0]
        self.layer2: nn.Sequential = layers[1]
        self.layer3: nn.Sequential = layers[2]
        self.layer4: nn.Sequential = layers[3]

    def stages(self) -> list[nn.Module]:
        stem = _group(conv1=self.conv1, bn1=self.bn1, relu=self.relu, maxpool=self.maxpool)
        return [stem, self.layer1, self.layer2, self.layer3, self.layer4]

    def forward_multiscale(self, x: Tensor) -> dict[str, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out: dict[str, Tensor] = {}
        layers = (self.layer1, self.layer2, self.layer3, self.layer4)
        for level, layer in zip(self.feature_info, layers, strict=True):
            x = layer(x)
            out[level.name] = x
        return out


class EfficientNetBackbone(_SequentialStagesBackbone):
    """EfficientNet B0-B7 and V2: torchvision's ``features``; ``feat4`` is the final 1x1 conv.

    The classifier dropout is the head's (``BackboneSpec.default_drop_rate``).
    """

    checkpoint_classifier_prefix = "classifier.1."

    def __init__(self, model: Any, *, name: str) -> None:
        super().__init__(model.features, STAGE_ENDS[name], name=name)


class MobileNetV3Backbone(_SequentialStagesBackbone):
    """MobileNetV3: ``features`` plus the hidden ``Linear`` + ``Hardswish`` as ``pre_logits``.

    ``feat4`` is the final 1x1 conv (``out_channels``); ``pre_logits_dim`` is the hidden
    width. The dropout before torchvision's last ``Linear`` belongs to the head. With
    ``extra_kwargs={"dilated": True}`` the last level stays at stride 16.
    """

    checkpoint_classifier_prefix = "classifier.3."
    checkpoint_key_map = {"classifier.0.": "pre_logits.0."}

    def __init__(self, model: Any, *, name: str, dilated: bool = False) -> None:
        hidden = model.classifier[0]
        super().__init__(
            model.features,
            STAGE_ENDS[name],
            name=name,
            strides=(4, 8, 16, 16 if dilated else 32),
            pre_logits_dim=int(hidden.out_features),
        )
        self.pre_logits = nn.Sequential(hidden, model.classifier[1])


class ConvNeXtBackbone(_SequentialStagesBackbone):
    """ConvNeXt: ``features``, then pooling and ``pre_logits`` (``LayerNorm2d``, ``Flatten``).

    Pooling and the norm run exactly as in torchvision: average pool to ``(N, C, 1, 1)``,
    ``LayerNorm2d``, flatten; ``pre_logits`` takes the pooled vector flat or as
    ``(N, C, 1, 1)``.
    """

    checkpoint_classifier_prefix = "classifier.2."
    checkpoint_key_map = {"classifier.0.": "pre_logits.0."}

    def __init__(self, model: Any, *, name: str) -> None:
        super().__init__(model.features, STAGE_ENDS[name], name=name)
        layers = _ChannelsFirstPreLogits(model.classifier[0], model.classifier[1])
        self.pre_logits = layers


class SwinBackbone(_SequentialStagesBackbone):
    """Swin and Swin V2: ``features`` (channels-last inside) plus the final ``norm``.

    Every level is returned NCHW; ``feat1`` ... ``feat3`` are raw stage outputs, ``feat4``
    has ``norm`` applied, as torchvision does before pooling.
    """

    checkpoint_classifier_prefix = "head."

    def __init__(self, model: Any, *, name: str) -> None:
        super().__init__(model.features, STAGE_ENDS[name], name=name)
        self.norm: nn.Module = model.norm

    def stages(self) -> list[nn.Module]:
        groups = super().stages()
        groups[-1] = _group(blocks=groups[-1], norm=self.norm)
        return groups

    def forward_multiscale(self, x: Tensor) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        last = len(self.features) - 1
        for index, block in enumerate(self.features):
            x = block(x)
            level = self._level_at.get(index)
            if level is not None:
                out[level] = torch.permute(self.norm(x) if index == last else x, (0, 3, 1, 2))
        return out


class ViTBackbone(TorchvisionBackbone):
    """Vision Transformer (``vit_b_16`` ... ``vit_l_32``).

    One level, the patch tokens (class token removed) as an NCHW map at stride = patch size,
    named by that stride: ``feat3`` for /16 models, ``feat4`` for /32 models.
    ``forward_pre_logits`` returns the class token after the encoder, as torchvision does.
    Inputs whose sides are multiples of the patch size but differ from ``image_size`` get
    the position embedding resized bicubically (``align_corners=True``, like torchvision's
    ``interpolate_embeddings``; the class-token embedding is kept as is). At ``image_size``
    the computation is torchvision's.
    """

    checkpoint_classifier_prefix = "heads.head."

    def __init__(self, model: Any, *, name: str) -> None:
        patch = int(model.patch_size)
        if patch not in _LEVEL_BY_STRIDE:
            raise ValueError(
                f"ViT {name!r} has patch size {patch}; supported: {sorted(_LEVEL_BY_STRIDE)}"
            )
        hidden = int(model.hidden_dim)
        representation = model.representation_size
        level = FeatureLevel(name=_LEVEL_BY_STRIDE[patch], channels=hidden, stride=patch)
        super().__init__(
            name=name,
            feature_info=[level],
            pre_logits_dim=hidden if representation is None else int(representation),
        )
        self.patch_size = patch
        self.image_size = int(model.image_size)
        self.hidden_dim = hidden
        self.grid_size = self.image_size // patch
        self.conv_proj: nn.Module = model.conv_proj
        self.class_token: nn.Parameter = model.class_token
        self.encoder: Any = model.encoder  # torchvision's Encoder: pos_embedding, layers, ln
        if representation is not None:
            self.checkpoint_key_map = {"heads.pre_logits.": "pre_logits.0."}
            self.pre_logits = nn.Sequential(model.heads.pre_logits, model.heads.act)

    def stages(self) -> list[nn.Module]:
        stem = _group(
            conv_proj=self.conv_proj,
            class_token=self.class_token,
            pos_embedding=self.encoder.pos_embedding,
        )
        return [stem, _group(layers=self.encoder.layers, ln=self.encoder.ln)]

    def position_embedding(self, grid_h: int, grid_w: int) -> Tensor:
        """``(1, 1 + grid_h * grid_w, hidden_dim)``, resized from the built grid if needed."""
        pos = self.encoder.pos_embedding
        if grid_h == grid_w == self.grid_size:
            return pos
        side = self.grid_size
        grid = pos[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(grid_h, grid_w), mode="bicubic", align_corners=True)
        grid = grid.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)
        return torch.cat([pos[:, :1], grid], dim=1)

    def encode(self, x: Tensor) -> tuple[Tensor, int, int]:
        """Encoder output ``(N, 1 + h * w, hidden_dim)`` (class token first) and ``(h, w)``."""
        height, width = x.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"{self.name} needs input sides divisible by the patch size "
                f"{self.patch_size}, got {height}x{width}"
            )
        x = self.conv_proj(x)
        n, _, grid_h, grid_w = x.shape
        x = x.reshape(n, self.hidden_dim, grid_h * grid_w).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        encoder = self.encoder
        x = x + self.position_embedding(grid_h, grid_w)
        return encoder.ln(encoder.layers(encoder.dropout(x))), grid_h, grid_w

    def forward_multiscale(self, x: Tensor) -> dict[str, Tensor]:
        tokens, grid_h, grid_w = self.encode(x)
        patches = tokens[:, 1:].permute(0, 2, 1)
        fmap = patches.reshape(tokens.shape[0], self.hidden_dim, grid_h, grid_w)
        return {self.feature_info[0].name: fmap}

    def forward_pre_logits(self, x: Tensor) -> Tensor:
        """The class token after the encoder (through ``pre_logits`` if the model has one)."""
        return self.pre_logits(self.encode(x)[0][:, 0])


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


def build_resnet(config: BackboneConfig) -> Backbone:
    """ResNet-18/34/50/101/152, ResNeXt and Wide ResNet."""
    model = _build_torchvision(_RESNET, config)
    dilation = config.extra_kwargs.get("replace_stride_with_dilation") or ()
    return _finish(ResNetBackbone(model, name=config.model_name, dilation=dilation), config)


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
