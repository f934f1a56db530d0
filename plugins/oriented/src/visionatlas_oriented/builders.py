"""Builders of the ``oriented_object_detection`` architectures: ``builder(config, num_classes)``.

The backbone is any registered multi-scale backbone (ResNet-50 by default; only ResNet-50
for ``rotated_fcos_resnet50``); its levels at strides 8, 16 and 32 feed a
``torchvision.ops.FeaturePyramidNetwork`` with convolutional P6 and P7, as FCOS and
RetinaNet use. ``pretrained=True`` loads the backbone's ImageNet weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from visionatlas.catalog import current_catalog
from visionatlas.config import BackboneConfig, ModelConfig
from visionatlas.errors import IncompatibleBackboneError
from visionatlas_detection.any_backbone import p6p7
from visionatlas_detection.backbone_adapter import BackboneFPN, freeze_batchnorm, levels_at
from visionatlas_detection.specs import ONE_STAGE_STRIDES, compatible_backbones, incompatibility
from visionatlas_oriented.config import OrientedConfig
from visionatlas_oriented.detector import InferenceSettings, OrientedDetector
from visionatlas_oriented.fcos import RotatedFCOS
from visionatlas_oriented.losses import LossSettings
from visionatlas_oriented.retinanet import RotatedRetinaNet
from visionatlas_oriented.transform import IMAGENET_MEAN, IMAGENET_STD, OrientedTransform

__all__ = ["PYRAMID_STRIDES", "rotated_fcos", "rotated_fcos_resnet50", "rotated_retinanet"]

PYRAMID_STRIDES = (8, 16, 32, 64, 128)
"""P3-P7: the backbone's strides 8-32 and two extra convolutional levels."""
DEFAULT_BACKBONE = "resnet50"


def _config(config: ModelConfig) -> OrientedConfig:
    if isinstance(config, OrientedConfig):
        return config
    return OrientedConfig.model_validate(config.model_dump(exclude_unset=True))


def _settings(cfg: OrientedConfig) -> tuple[LossSettings, InferenceSettings]:
    loss, inference = LossSettings(), InferenceSettings()
    return (
        LossSettings(
            focal_alpha=loss.focal_alpha if cfg.focal_alpha is None else cfg.focal_alpha,
            focal_gamma=loss.focal_gamma if cfg.focal_gamma is None else cfg.focal_gamma,
            regression=cfg.regression_loss or loss.regression,
            regression_weight=cfg.regression_loss_weight or loss.regression_weight,
            angle=cfg.angle_loss or loss.angle,
            angle_weight=cfg.angle_loss_weight or loss.angle_weight,
        ),
        InferenceSettings(
            score_thresh=inference.score_thresh if cfg.score_thresh is None else cfg.score_thresh,
            nms_thresh=inference.nms_thresh if cfg.nms_thresh is None else cfg.nms_thresh,
            candidates_per_level=cfg.candidates_per_level or inference.candidates_per_level,
            detections_per_img=cfg.detections_per_img or inference.detections_per_img,
        ),
    )


def _backbone_config(cfg: OrientedConfig, name: str, *, fixed: str | None) -> BackboneConfig:
    backbone = cfg.backbone_config(default=fixed or DEFAULT_BACKBONE)
    if fixed is not None and backbone.model_name != fixed:
        raise IncompatibleBackboneError(
            f"{name} is seed 001's detector on {fixed!r}, so backbone accepts only {fixed!r}, "
            f"got {backbone.model_name!r}; for other backbones use 'rotated_fcos'"
        )
    catalog = current_catalog()
    why = incompatibility(catalog.get_backbone(backbone.model_name), ONE_STAGE_STRIDES)
    if why is not None:
        accepted = compatible_backbones(catalog.backbones(), ONE_STAGE_STRIDES)
        raise IncompatibleBackboneError(
            f"{name} builds a feature pyramid over backbone levels at strides "
            f"{list(ONE_STAGE_STRIDES)}, but {why}. Accepted backbones: {', '.join(accepted)}"
        )
    return backbone


def _build(
    config: ModelConfig,
    num_classes: int,
    *,
    name: str,
    family: Callable[..., OrientedDetector],
    fixed_backbone: str | None = None,
) -> OrientedDetector:
    if num_classes < 2:
        raise ValueError(
            f"{name} needs num_classes >= 2: it counts the background (label 0) plus at least "
            f"one object class, got {num_classes}"
        )
    cfg = _config(config)
    backbone_config = _backbone_config(cfg, name, fixed=fixed_backbone)
    pretrained = backbone_config.pretrained or backbone_config.weights_path is not None
    frozen = cfg.frozen_batchnorm if cfg.frozen_batchnorm is not None else pretrained
    channels = cfg.fpn_channels or 256
    trunk = current_catalog().create_backbone(backbone_config)
    trunk.pre_logits = nn.Identity()  # pooling-side layers: unused by detectors
    trunk.pretrained_classifier_state = None
    levels = levels_at(trunk, ONE_STAGE_STRIDES, architecture=name)
    if frozen:
        freeze_batchnorm(trunk)
    adapter = BackboneFPN(trunk, levels, channels, p6p7(channels))
    loss_settings, inference = _settings(cfg)
    transform = OrientedTransform(
        cfg.min_size or 800,
        cfg.max_size or 1333,
        cfg.image_mean or IMAGENET_MEAN,
        cfg.image_std or IMAGENET_STD,
        size_divisible=PYRAMID_STRIDES[-1],
    )
    kwargs: dict[str, Any] = {
        "transform": transform,
        "num_classes": num_classes,
        "strides": PYRAMID_STRIDES,
        "loss_settings": loss_settings,
        "inference": inference,
        "stages": trunk.stages(),
    }
    model = family(adapter, channels, **kwargs)
    stages = len(model.backbone_stages())
    if cfg.trainable_backbone_layers is not None and cfg.trainable_backbone_layers > stages:
        raise ValueError(
            f"trainable_backbone_layers={cfg.trainable_backbone_layers} is more than the "
            f"{stages} stages of {name}'s backbone; use 0 to {stages}"
        )
    trainable = cfg.trainable_backbone_layers
    if cfg.freeze_backbone:
        trainable = 0
    elif trainable is None:
        trainable = min(3, stages) if pretrained else stages
    model.freeze_backbone(trainable)
    return model


def rotated_fcos_resnet50(config: ModelConfig, num_classes: int) -> OrientedDetector:
    """Rotated FCOS on ResNet-50 + FPN (seed 001's oriented detector)."""
    return _build(config, num_classes, name="rotated_fcos_resnet50", family=RotatedFCOS,
                  fixed_backbone=DEFAULT_BACKBONE)  # fmt: skip


def rotated_fcos(config: ModelConfig, num_classes: int) -> OrientedDetector:
    """Rotated FCOS on ``config.backbone`` (any multi-scale backbone; default ResNet-50)."""
    return _build(config, num_classes, name="rotated_fcos", family=RotatedFCOS)


def rotated_retinanet(config: ModelConfig, num_classes: int) -> OrientedDetector:
    """Rotated RetinaNet on ``config.backbone`` (any multi-scale backbone; default ResNet-50)."""
    return _build(config, num_classes, name="rotated_retinanet", family=RotatedRetinaNet)
