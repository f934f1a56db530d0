"""Backbone modules cut from torchvision classification models, one class per family.

Each backbone keeps torchvision's own submodule names, so its ``state_dict`` keys are those
of the torchvision model minus the classifier; pre-logits layers that torchvision keeps in
its classifier (MobileNetV3's hidden layer, ConvNeXt's final norm) live under
``pre_logits``. Each class wraps an already built torchvision model; the builders in
:mod:`visionatlas.models.backbones.torchvision_families` make them from a config.

Multi-scale levels are ``feat1`` ... ``feat4`` at strides 4, 8, 16, 32; level ``i`` is the
output of the last block at that stride, and ``feat4`` is the final feature map. ViT has a
single level (see :class:`ViTBackbone`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

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
