"""The detection config: ``ModelConfig`` plus the detector's own options.

Fields left at ``None`` take the architecture's default (torchvision's, listed in
``docs/tasks/object-detection.md``). Options that do not apply to an architecture (focal-loss
settings on Faster R-CNN, FPN channels on SSDLite, ...) are refused when the model is built,
with a message naming the architectures that have them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, Strict, model_validator

from visionatlas.config import ModelConfig

__all__ = ["DetectionConfig", "PretrainedScope"]

PretrainedScope = Literal["full", "backbone"]
_Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]


class DetectionConfig(ModelConfig):
    """Config of object-detection and instance-segmentation architectures."""

    pretrained_scope: PretrainedScope | None = Field(
        default=None,
        description=(
            "What pretrained=True / weights_path loads: 'full' the whole detector (COCO "
            "weights; class-dependent layers are replaced when num_classes differs), "
            "'backbone' only the backbone's ImageNet weights. Default: 'full' for the "
            "torchvision architectures, 'backbone' for the any-backbone ones"
        ),
    )
    weights: str | None = Field(
        default=None,
        description="Detector weights member, e.g. 'COCO_V1' or 'DEFAULT' (full scope only)",
    )
    backbone_weights: str | None = Field(
        default=None,
        description="Backbone weights member, e.g. 'IMAGENET1K_V2' (backbone scope only)",
    )
    min_size: int | None = Field(
        default=None,
        strict=True,
        ge=16,
        le=4096,
        description=(
            "Images are resized so that the shorter side is min_size (the longer side at most "
            "max_size); SSDLite resizes to a fixed min_size x min_size square. "
            "Default: 800 (SSDLite: 320)"
        ),
    )
    max_size: int | None = Field(
        default=None,
        strict=True,
        ge=16,
        le=8192,
        description="Longest image side after resizing; default 1333 (not used by SSDLite)",
    )
    image_mean: tuple[_Number, _Number, _Number] | None = Field(
        default=None, description="Per-channel mean for input normalization; default: ImageNet's"
    )
    image_std: tuple[_Number, _Number, _Number] | None = Field(
        default=None, description="Per-channel std for input normalization; default: ImageNet's"
    )
    score_thresh: float | None = Field(
        default=None,
        strict=True,
        ge=0.0,
        le=1.0,
        description="Detections scoring below this are dropped (default 0.05; FCOS 0.2; SSDLite "
        "0.001)",
    )
    nms_thresh: float | None = Field(
        default=None,
        strict=True,
        ge=0.0,
        le=1.0,
        description="IoU threshold of the final non-maximum suppression (default 0.5; FCOS 0.6; "
        "SSDLite 0.55)",
    )
    detections_per_img: int | None = Field(
        default=None,
        strict=True,
        ge=1,
        le=10_000,
        description="Detections kept per image (default 100; SSDLite 300)",
    )
    proposals_per_image: int | None = Field(
        default=None,
        strict=True,
        ge=1,
        le=100_000,
        description=(
            "Faster/Mask R-CNN: region proposals kept per image (RPN top-n per level before "
            "NMS and in total after it); default 2000 in training, 1000 in eval"
        ),
    )
    focal_alpha: float | None = Field(
        default=None,
        strict=True,
        ge=0.0,
        le=1.0,
        description="Focal-loss alpha of the classification loss (FCOS, RetinaNet); default 0.25",
    )
    focal_gamma: float | None = Field(
        default=None,
        strict=True,
        ge=0.0,
        le=10.0,
        description="Focal-loss gamma of the classification loss (FCOS, RetinaNet); default 2.0",
    )
    fpn_channels: int | None = Field(
        default=None,
        strict=True,
        ge=16,
        le=2048,
        description=(
            "Channels of the feature pyramid and the heads on it; default 256. A multiple of "
            "32 for FCOS and RetinaNet v2 (GroupNorm(32) heads). With full pretrained "
            "weights only 256 fits"
        ),
    )
    trainable_backbone_layers: int | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=16,
        description=(
            "Trainable backbone stages counted from the last (torchvision's "
            "trainable_backbone_layers): 0 freezes the backbone, the number of stages "
            "(5; SSDLite 6) trains all. Default: 3 when pretrained weights are loaded, "
            "all otherwise (SSDLite: all)"
        ),
    )
    frozen_batchnorm: bool | None = Field(
        default=None,
        strict=True,
        description=(
            "Replace the backbone's BatchNorm layers by FrozenBatchNorm2d (fixed statistics "
            "and affine parameters). Default: as torchvision, i.e. when pretrained weights "
            "are loaded, except for the v2 architectures and SSDLite"
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> DetectionConfig:
        if self.dropout is not None:
            raise ValueError(
                "dropout does not apply to detectors (they have no dropout layer); leave it unset"
            )
        if self.head is not None:
            raise ValueError(
                f"head={self.head!r}: detectors bring their own heads; leave head unset and "
                "pick the architecture instead (e.g. 'fcos', 'retinanet', 'fasterrcnn')"
            )
        if (
            self.min_size is not None
            and self.max_size is not None
            and self.min_size > self.max_size
        ):
            raise ValueError(
                f"min_size={self.min_size} is larger than max_size={self.max_size}; "
                "the shorter side cannot exceed the longer one"
            )
        if self.image_std is not None and min(self.image_std) <= 0:
            raise ValueError(f"image_std must be positive, got {self.image_std}")
        trainable = self.trainable_backbone_layers
        if self.freeze_backbone and trainable:
            raise ValueError(
                f"freeze_backbone=True freezes the whole backbone, but "
                f"trainable_backbone_layers={trainable} asks to train part of it; set one"
            )
        loads = self.pretrained or self.weights_path is not None
        for name in ("weights", "backbone_weights"):
            if getattr(self, name) is not None and not loads:
                raise ValueError(
                    f"{name}={getattr(self, name)!r} selects which pretrained weights load; "
                    "set pretrained=True as well"
                )
        if self.weights is not None and self.pretrained_scope == "backbone":
            raise ValueError(
                f"weights={self.weights!r} names detector weights, but pretrained_scope="
                "'backbone' loads only the backbone; use backbone_weights instead"
            )
        if self.backbone_weights is not None and self.pretrained_scope == "full":
            raise ValueError(
                f"backbone_weights={self.backbone_weights!r} names backbone weights, but "
                "pretrained_scope='full' loads the whole detector; use weights instead"
            )
        return self
