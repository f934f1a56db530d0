"""Faster R-CNN, FCOS and RetinaNet on any registered multi-scale backbone.

The backbone's levels at the strides the detector expects feed a
``torchvision.ops.FeaturePyramidNetwork`` with torchvision's extra levels for that detector
(a max-pooled P6 for Faster R-CNN, convolutional P6/P7 for FCOS and RetinaNet); anchors,
heads and losses are torchvision's defaults for the family.
"""

from __future__ import annotations

from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from visionatlas_detection.backbone_adapter import BackboneFPN
from visionatlas_detection.build import AnyBackboneRecipe, Options
from visionatlas_detection.heads import FocalFCOSHead, FocalRetinaNetHead
from visionatlas_detection.models import (
    Detector,
    FasterRCNNDetector,
    FCOSDetector,
    RetinaNetDetector,
)
from visionatlas_detection.specs import ONE_STAGE_STRIDES, RCNN_STRIDES
from visionatlas_detection.torchvision_archs import (
    FASTER_RCNN,
    FCOS_FAMILY,
    RETINANET,
    RETINANET_ANCHORS,
)

__all__ = ["ANY_BACKBONE_RECIPES", "max_pool_p6", "p6p7"]


def max_pool_p6(channels: int) -> LastLevelMaxPool:
    """Faster/Mask R-CNN's extra level: P6 max-pooled from P5."""
    return LastLevelMaxPool()


def p6p7(channels: int) -> LastLevelP6P7:
    """FCOS/RetinaNet's extra levels: P6 and P7 convolved from P5."""
    return LastLevelP6P7(channels, channels)


def _fasterrcnn(backbone: BackboneFPN, options: Options) -> Detector:
    return FasterRCNNDetector(backbone, options.num_classes, **options.detector_kwargs)


def _fcos(backbone: BackboneFPN, options: Options) -> Detector:
    head = FocalFCOSHead(
        options.fpn_channels,
        1,
        options.num_classes,
        focal_alpha=options.focal_alpha,
        focal_gamma=options.focal_gamma,
    )
    return FCOSDetector(backbone, options.num_classes, head=head, **options.detector_kwargs)


def _retinanet(backbone: BackboneFPN, options: Options) -> Detector:
    head = FocalRetinaNetHead(
        options.fpn_channels,
        RETINANET_ANCHORS,
        options.num_classes,
        focal_alpha=options.focal_alpha,
        focal_gamma=options.focal_gamma,
    )
    return RetinaNetDetector(backbone, options.num_classes, head=head, **options.detector_kwargs)


ANY_BACKBONE_RECIPES: dict[str, AnyBackboneRecipe] = {
    recipe.name: recipe
    for recipe in (
        AnyBackboneRecipe("fasterrcnn", FASTER_RCNN, RCNN_STRIDES, max_pool_p6, _fasterrcnn),
        AnyBackboneRecipe(
            "fcos", FCOS_FAMILY, ONE_STAGE_STRIDES, p6p7, _fcos, groupnorm_heads=True
        ),
        AnyBackboneRecipe("retinanet", RETINANET, ONE_STAGE_STRIDES, p6p7, _retinanet),
    )
}
