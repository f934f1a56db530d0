"""Configs of the semantic-segmentation architectures: ``ModelConfig`` plus loss and weights.

:class:`SegmentationConfig` serves torchvision's six models; the any-backbone ``fcn`` takes
:class:`GenericSegmentationConfig` (adds ``output_stride``) and ``deeplabv3`` takes
:class:`DeepLabV3Config` (adds ``atrous_rates`` too). Checks that need the architecture or
``num_classes`` (an auxiliary head to switch on, the length of ``class_weights``) are made by
the builders.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, Strict, model_validator

from visionatlas.config import BackboneConfig, ModelConfig

__all__ = ["DeepLabV3Config", "GenericSegmentationConfig", "SegmentationConfig"]

NonNegative = Annotated[float, Strict(), Field(ge=0.0, allow_inf_nan=False)]
PositiveRate = Annotated[int, Strict(), Field(ge=1)]


class SegmentationConfig(ModelConfig):
    """Config of semantic-segmentation architectures."""

    aux_loss: bool | None = Field(
        default=None,
        strict=True,
        description="Train an auxiliary FCN head on the backbone level before the last; "
        "default: on for FCN and DeepLabV3, off for LR-ASPP (which has no auxiliary head)",
    )
    aux_loss_weight: float = Field(
        default=0.5,
        ge=0.0,
        strict=True,
        allow_inf_nan=False,
        description="Weight of the auxiliary loss in the total loss",
    )
    ignore_index: int = Field(
        default=255,
        strict=True,
        description="Target value of pixels left out of the loss (255 marks VOC's borders)",
    )
    class_weights: tuple[NonNegative, ...] | None = Field(
        default=None,
        min_length=1,
        description="Per-class weights of the cross-entropy loss, one per class; default: equal",
    )
    label_smoothing: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        strict=True,
        description="Label smoothing of the cross-entropy loss",
    )
    pretrained_scope: Literal["full", "backbone"] | None = Field(
        default=None,
        description="What pretrained loads: 'full' (the COCO-with-VOC-labels segmentation "
        "checkpoint; class layers are replaced when num_classes differs) or 'backbone' (the "
        "backbone's ImageNet weights only); default: 'full' where the architecture has such "
        "a checkpoint, else 'backbone'",
    )
    trainable_backbone_layers: int | None = Field(
        default=None,
        ge=0,
        strict=True,
        description="Freeze the backbone except its last N stages (stem, then one stage per "
        "feature level); freeze_backbone=True alone means 0",
    )

    @model_validator(mode="after")
    def _consistent(self) -> SegmentationConfig:
        if self.head is not None:
            raise ValueError(
                f"head={self.head!r} cannot be set: segmentation architectures have their own "
                "heads; pick the architecture instead (e.g. 'deeplabv3' or 'fcn' on any backbone)"
            )
        if self.pretrained_scope is not None and not self.asks_pretrained:
            raise ValueError(
                f"pretrained_scope={self.pretrained_scope!r} selects which pretrained "
                "weights load; set pretrained=True (or weights_path) as well"
            )
        if (
            self.trainable_backbone_layers is not None
            and "freeze_backbone" in self.model_fields_set
            and not self.freeze_backbone
        ):
            raise ValueError(
                "trainable_backbone_layers freezes the other backbone stages, but "
                "freeze_backbone=False asks for none frozen; set one of them"
            )
        return self

    @property
    def asks_pretrained(self) -> bool:
        """Whether any pretrained weights are asked for (model or backbone config)."""
        bb = self.backbone
        from_backbone = isinstance(bb, BackboneConfig) and (
            bb.pretrained or bb.weights_path is not None
        )
        return self.pretrained or self.weights_path is not None or from_backbone

    @property
    def backbone_trainable_stages(self) -> int | None:
        """Backbone stages left trainable when it is frozen; None when nothing is frozen."""
        if self.trainable_backbone_layers is not None:
            return self.trainable_backbone_layers
        return 0 if self.freeze_backbone else None


class GenericSegmentationConfig(SegmentationConfig):
    """Config of the any-backbone ``fcn``: adds the backbone's output stride."""

    output_stride: Literal[8, 16, 32] | None = Field(
        default=None,
        description="Stride of the last feature map, by dilating the last stages: 8 or 16 "
        "on ResNet-50 and deeper ResNets/ResNeXts/Wide ResNets, 16 on MobileNetV3; default: "
        "the backbone's own (32 for the built-in backbones)",
    )


class DeepLabV3Config(GenericSegmentationConfig):
    """Config of the any-backbone ``deeplabv3``: adds the ASPP dilation rates."""

    atrous_rates: tuple[PositiveRate, ...] | None = Field(
        default=None,
        min_length=1,
        description="Dilation rates of the ASPP's 3x3 branches; default: the paper's rates "
        "for the backbone's output stride, 12, 24, 36 at stride 8 (as torchvision), 6, 12, 18 "
        "at 16 and 3, 6, 9 at 32 (the same reach in input pixels)",
    )
