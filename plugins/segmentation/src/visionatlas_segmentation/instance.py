"""Mask R-CNN for ``instance_segmentation``: torchvision's, and on any multi-scale backbone.

Built with the detection plugin's machinery (config, input checks, backbone adapter,
pretrained loading), so the options and the train/eval contract are those of
``object_detection``; targets also carry ``masks`` (uint8/bool ``(K, H, W)``) and eval
predictions add ``masks`` (``(K, 1, H, W)`` probabilities at the input size).
"""

from __future__ import annotations

import dataclasses
from functools import partial

from torch import nn
from torchvision.models.detection.mask_rcnn import MaskRCNN, MaskRCNNHeads

from visionatlas.config import ModelConfig
from visionatlas_detection.any_backbone import max_pool_p6
from visionatlas_detection.backbone_adapter import BackboneFPN
from visionatlas_detection.build import (
    AnyBackboneRecipe,
    Options,
    build_any_backbone_detector,
    build_torchvision_detector,
)
from visionatlas_detection.models import Detector, reset_box_predictor
from visionatlas_detection.specs import RCNN_STRIDES
from visionatlas_detection.torchvision_archs import FASTER_RCNN, build_rcnn, resnet50_recipe

__all__ = [
    "MASK_RCNN",
    "MaskRCNNDetector",
    "maskrcnn",
    "maskrcnn_resnet50",
    "maskrcnn_resnet50_v2",
]

MASK_RCNN = dataclasses.replace(FASTER_RCNN, title="Mask R-CNN")


class MaskRCNNDetector(Detector, MaskRCNN):  # type: ignore[misc]
    """torchvision's ``MaskRCNN`` with the visionatlas contract; targets need ``masks``."""

    requires_masks = True

    def class_layers(self) -> list[tuple[str, int]]:
        return [
            ("roi_heads.box_predictor.cls_score", 1),
            ("roi_heads.box_predictor.bbox_pred", 4),
            ("roi_heads.mask_predictor.mask_fcn_logits", 1),
        ]

    def reset_classes(self, num_classes: int) -> None:
        """New box predictor and per-class mask logits; the mask head's upsampling and
        every other layer keep their weights."""
        reset_box_predictor(self, num_classes)
        predictor = self.roi_heads.mask_predictor
        old = predictor.mask_fcn_logits
        new = nn.Conv2d(old.in_channels, num_classes, kernel_size=1)
        nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")  # torchvision's
        device = None if old.weight.is_meta else old.weight.device  # meta: a deferred_init
        predictor.mask_fcn_logits = new.to(device=device, dtype=old.weight.dtype)  # placeholder
        self.num_classes = num_classes


def _maskrcnn_v2(options: Options) -> Detector:
    mask_head = MaskRCNNHeads(
        options.fpn_channels, [256, 256, 256, 256], 1, norm_layer=nn.BatchNorm2d
    )
    return build_rcnn(MaskRCNNDetector, options, v2=True, v2_heads={"mask_head": mask_head})


def _maskrcnn_any(backbone: BackboneFPN, options: Options) -> Detector:
    return MaskRCNNDetector(backbone, options.num_classes, **options.detector_kwargs)


MASKRCNN_RESNET50 = resnet50_recipe(
    name="maskrcnn_resnet50",
    family=MASK_RCNN,
    construct=partial(build_rcnn, MaskRCNNDetector),
    weights="MaskRCNN_ResNet50_FPN_Weights.DEFAULT",
    legacy_eps_weights="COCO_V1",
)
MASKRCNN_RESNET50_V2 = resnet50_recipe(
    name="maskrcnn_resnet50_v2",
    family=MASK_RCNN,
    construct=_maskrcnn_v2,
    weights="MaskRCNN_ResNet50_FPN_V2_Weights.DEFAULT",
    frozen_batchnorm_when_pretrained=False,
)
MASKRCNN_ANY = AnyBackboneRecipe("maskrcnn", MASK_RCNN, RCNN_STRIDES, max_pool_p6, _maskrcnn_any)


def maskrcnn_resnet50(config: ModelConfig, num_classes: int) -> Detector:
    """torchvision's ``maskrcnn_resnet50_fpn``."""
    return build_torchvision_detector(config, num_classes, MASKRCNN_RESNET50)


def maskrcnn_resnet50_v2(config: ModelConfig, num_classes: int) -> Detector:
    """torchvision's ``maskrcnn_resnet50_fpn_v2``."""
    return build_torchvision_detector(config, num_classes, MASKRCNN_RESNET50_V2)


def maskrcnn(config: ModelConfig, num_classes: int) -> Detector:
    """Mask R-CNN with an FPN on ``config.backbone`` (default ResNet-50)."""
    return build_any_backbone_detector(config, num_classes, MASKRCNN_ANY)
