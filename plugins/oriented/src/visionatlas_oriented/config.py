"""The oriented-detection config: ``ModelConfig`` plus the detectors' own options.

Fields left at ``None`` take the architecture's default (listed in
``docs/tasks/oriented-detection.md``). ``pretrained=True`` (or ``weights_path``) loads the
backbone's ImageNet weights: no oriented detector weights are published for these heads, and
a run's own checkpoints load through the model registry.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, Strict, model_validator

from visionatlas.config import ModelConfig

__all__ = ["AngleLoss", "OrientedConfig", "RegressionLoss"]

RegressionLoss = Literal["probiou", "kld", "gwd"]
AngleLoss = Literal["none", "smooth_l1"]
_Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]


class OrientedConfig(ModelConfig):
    """Config of the oriented object-detection architectures."""

    min_size: int | None = Field(
        default=None,
        strict=True,
        ge=16,
        le=4096,
        description="Images are resized so that the shorter side is min_size (the longer side "
        "at most max_size); default 800",
    )
    max_size: int | None = Field(
        default=None,
        strict=True,
        ge=16,
        le=8192,
        description="Longest image side after resizing; default 1333",
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
        description="Detections scoring below this are dropped; default 0.05",
    )
    nms_thresh: float | None = Field(
        default=None,
        strict=True,
        ge=0.0,
        le=1.0,
        description="Rotated-IoU threshold of the class-aware non-maximum suppression; "
        "default 0.1 (DOTA's objects rarely overlap)",
    )
    detections_per_img: int | None = Field(
        default=None,
        strict=True,
        ge=1,
        le=10_000,
        description="Detections kept per image after NMS; default 100",
    )
    candidates_per_level: int | None = Field(
        default=None,
        strict=True,
        ge=1,
        le=100_000,
        description="Top-scoring locations (anchors) kept per pyramid level before NMS; "
        "default 1000",
    )
    fpn_channels: int | None = Field(
        default=None,
        strict=True,
        ge=32,
        le=2048,
        description="Channels of the feature pyramid and the heads on it (a multiple of 32: "
        "the heads use GroupNorm(32)); default 256",
    )
    focal_alpha: float | None = Field(
        default=None,
        strict=True,
        ge=0.0,
        le=1.0,
        description="Focal-loss alpha of the classification loss; default 0.25",
    )
    focal_gamma: float | None = Field(
        default=None,
        strict=True,
        ge=0.0,
        le=10.0,
        description="Focal-loss gamma of the classification loss; default 2.0",
    )
    regression_loss: RegressionLoss | None = Field(
        default=None,
        description="Box regression loss on the decoded rotated boxes: 'probiou' (default; "
        "bounded, scale-invariant, no hyperparameter), 'kld' or 'gwd' (Gaussian "
        "Kullback-Leibler or Wasserstein distance, 1 - 1/(1 + log1p(d)))",
    )
    angle_loss: AngleLoss | None = Field(
        default=None,
        description="Extra loss on the angle: 'none' (default; the Gaussian regression loss "
        "carries the angle) or 'smooth_l1' on the angle difference wrapped to [-pi/2, pi/2)",
    )
    angle_loss_weight: float | None = Field(
        default=None,
        strict=True,
        gt=0.0,
        le=100.0,
        description="Weight of the angle loss (angle_loss='smooth_l1' only); default 1.0",
    )
    regression_loss_weight: float | None = Field(
        default=None,
        strict=True,
        gt=0.0,
        le=100.0,
        description="Weight of the box regression loss; default 1.0",
    )
    trainable_backbone_layers: int | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=16,
        description="Trainable backbone stages counted from the last: 0 freezes the backbone, "
        "the number of stages trains all. Default: 3 with pretrained weights, all otherwise",
    )
    frozen_batchnorm: bool | None = Field(
        default=None,
        strict=True,
        description="Replace the backbone's BatchNorm layers by FrozenBatchNorm2d; default: "
        "when pretrained weights are loaded",
    )

    @model_validator(mode="after")
    def _consistent(self) -> OrientedConfig:
        if self.dropout is not None:
            raise ValueError("dropout does not apply to oriented detectors; leave it unset")
        if self.head is not None:
            raise ValueError(
                f"head={self.head!r}: oriented detectors bring their own heads; leave head "
                "unset and pick the architecture ('rotated_fcos' or 'rotated_retinanet')"
            )
        low, high = self.min_size, self.max_size
        if low is not None and high is not None and low > high:
            raise ValueError(
                f"min_size={low} is larger than max_size={high}; the shorter side cannot "
                "exceed the longer one"
            )
        if self.image_std is not None and min(self.image_std) <= 0:
            raise ValueError(f"image_std must be positive, got {self.image_std}")
        if self.fpn_channels is not None and self.fpn_channels % 32:
            raise ValueError(
                f"fpn_channels={self.fpn_channels}: the heads use GroupNorm(32), so the "
                "channels must be a multiple of 32"
            )
        if self.angle_loss_weight is not None and self.angle_loss != "smooth_l1":
            raise ValueError(
                "angle_loss_weight weighs the angle loss, which is off; set "
                "angle_loss='smooth_l1' as well"
            )
        if self.freeze_backbone and self.trainable_backbone_layers:
            raise ValueError(
                "freeze_backbone=True freezes the whole backbone, but "
                f"trainable_backbone_layers={self.trainable_backbone_layers} asks to train "
                "part of it; set one"
            )
        return self
