"""The unified backbone interface every registered backbone implements."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from visionatlas.specs import FeatureLevel

__all__ = ["Backbone"]


class Backbone(nn.Module):
    """A feature extractor with one interface for every family.

    Subclasses fill :meth:`stages` (ordered module groups, stem first, one group per
    feature level after it) and :meth:`forward_multiscale`; ``forward`` returns the last
    level. ``forward_pre_logits`` pools the final map and applies the family's own
    pre-logits layers (MobileNetV3's hidden layer, ConvNeXt's norm), producing the
    ``(N, pre_logits_dim)`` vector that classification and regression heads consume.
    """

    name: str
    feature_info: tuple[FeatureLevel, ...]
    pre_logits_dim: int

    def __init__(
        self,
        *,
        name: str,
        feature_info: Sequence[FeatureLevel],
        pre_logits_dim: int | None = None,
    ) -> None:
        super().__init__()
        if not feature_info:
            raise ValueError(f"backbone {name!r} needs at least one feature level")
        self.name = name
        self.feature_info = tuple(feature_info)
        self.pre_logits_dim = self.out_channels if pre_logits_dim is None else pre_logits_dim
        # The family's layers between pooling and the final linear layer (none by default).
        self.pre_logits: nn.Module = nn.Identity()
        self.classifier: nn.Module | None = None
        # Final-layer weights that came with a pretrained checkpoint (e.g. ImageNet ``fc``);
        # a classification head of matching shape may adopt them, then they are dropped.
        self.pretrained_classifier_state: dict[str, Tensor] | None = None
        # The file or URL the pretrained weights came from; None while the weights are random.
        # ``load_backbone_weights`` sets it; a builder that loads weights by other means sets
        # it itself, or the catalog loads the spec's declared weights after building.
        self.weights_source: str | None = None

    # -- the interface -----------------------------------------------------------------
    @property
    def out_channels(self) -> int:
        """Channels of the final feature map: those of the last feature level."""
        return self.feature_info[-1].channels

    @property
    def num_features(self) -> int:
        """Channels of the final feature map (same as ``out_channels``)."""
        return self.out_channels

    @property
    def strides(self) -> tuple[int, ...]:
        return tuple(level.stride for level in self.feature_info)

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(level.channels for level in self.feature_info)

    @property
    def multiscale(self) -> bool:
        return len(self.feature_info) > 1

    def stages(self) -> list[nn.Module]:
        """Ordered module groups: the stem, then one group per feature level."""
        raise NotImplementedError

    def forward_multiscale(self, x: Tensor) -> dict[str, Tensor]:
        """Feature maps keyed by level name (``feat1`` ... ``feat4``), NCHW."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """The final feature map ``(N, out_channels, H/stride, W/stride)``."""
        return self.forward_multiscale(x)[self.feature_info[-1].name]

    def pool(self, features: Tensor) -> Tensor:
        """Global average pooling of the final map to ``(N, out_channels)``."""
        return torch.flatten(nn.functional.adaptive_avg_pool2d(features, 1), 1)

    def forward_pre_logits(self, x: Tensor) -> Tensor:
        """``(N, pre_logits_dim)``: what a linear head consumes."""
        return self.pre_logits(self.pool(self.forward(x)))

    def forward_head(self, x: Tensor) -> Tensor:
        """Logits of the built-in linear classifier (``BackboneConfig.num_classes > 0``)."""
        if self.classifier is None:
            raise RuntimeError(
                f"backbone {self.name!r} was built as a feature extractor (num_classes=0); "
                "build it with BackboneConfig(num_classes=N) to get a classifier"
            )
        return self.classifier(self.forward_pre_logits(x))

    # -- freezing ------------------------------------------------------------------------
    def freeze(self, trainable_stages: int = 0) -> None:
        """Freeze every parameter except those of the last ``trainable_stages`` stages.

        The pre-logits layers count with the last stage; a built-in classifier stays
        trainable.
        """
        groups = self.stages()
        if not 0 <= trainable_stages <= len(groups):
            raise ValueError(
                f"trainable_stages must be between 0 and {len(groups)} for backbone "
                f"{self.name!r}, got {trainable_stages}"
            )
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        trainable = groups[len(groups) - trainable_stages :] if trainable_stages else []
        if trainable_stages:
            trainable = [*trainable, *self._pre_logits_modules()]
        for group in trainable:
            group.requires_grad_(True)
        if self.classifier is not None:
            self.classifier.requires_grad_(True)

    def unfreeze(self) -> None:
        """Make every parameter trainable again."""
        self.requires_grad_(True)

    def _pre_logits_modules(self) -> list[nn.Module]:
        """Modules holding pre-logits parameters."""
        return [self.pre_logits]
