"""Builders of the ``object_detection`` architectures: ``builder(config, num_classes)``.

The catalog calls them with a validated :class:`~visionatlas_detection.config.DetectionConfig`;
see ``docs/tasks/object-detection.md`` for the options and the train/eval contract.
"""

from __future__ import annotations

from visionatlas.config import ModelConfig
from visionatlas_detection.any_backbone import ANY_BACKBONE_RECIPES
from visionatlas_detection.build import build_any_backbone_detector, build_torchvision_detector
from visionatlas_detection.models import Detector
from visionatlas_detection.torchvision_archs import RECIPES

__all__ = [
    "fasterrcnn",
    "fasterrcnn_resnet50",
    "fasterrcnn_resnet50_v2",
    "fcos",
    "fcos_resnet50",
    "retinanet",
    "retinanet_resnet50",
    "retinanet_resnet50_v2",
    "ssdlite_mobilenet_v3",
]


def fasterrcnn_resnet50(config: ModelConfig, num_classes: int) -> Detector:
    """torchvision's ``fasterrcnn_resnet50_fpn``."""
    return build_torchvision_detector(config, num_classes, RECIPES["fasterrcnn_resnet50"])


def fasterrcnn_resnet50_v2(config: ModelConfig, num_classes: int) -> Detector:
    """torchvision's ``fasterrcnn_resnet50_fpn_v2``."""
    return build_torchvision_detector(config, num_classes, RECIPES["fasterrcnn_resnet50_v2"])


def fcos_resnet50(config: ModelConfig, num_classes: int) -> Detector:
    """torchvision's ``fcos_resnet50_fpn``."""
    return build_torchvision_detector(config, num_classes, RECIPES["fcos_resnet50"])


def retinanet_resnet50(config: ModelConfig, num_classes: int) -> Detector:
    """torchvision's ``retinanet_resnet50_fpn``."""
    return build_torchvision_detector(config, num_classes, RECIPES["retinanet_resnet50"])


def retinanet_resnet50_v2(config: ModelConfig, num_classes: int) -> Detector:
    """torchvision's ``retinanet_resnet50_fpn_v2``."""
    return build_torchvision_detector(config, num_classes, RECIPES["retinanet_resnet50_v2"])


def ssdlite_mobilenet_v3(config: ModelConfig, num_classes: int) -> Detector:
    """torchvision's ``ssdlite320_mobilenet_v3_large``."""
    return build_torchvision_detector(config, num_classes, RECIPES["ssdlite_mobilenet_v3"])


def fasterrcnn(config: ModelConfig, num_classes: int) -> Detector:
    """Faster R-CNN with an FPN on ``config.backbone`` (default ResNet-50)."""
    return build_any_backbone_detector(config, num_classes, ANY_BACKBONE_RECIPES["fasterrcnn"])


def fcos(config: ModelConfig, num_classes: int) -> Detector:
    """FCOS with an FPN on ``config.backbone`` (default ResNet-50)."""
    return build_any_backbone_detector(config, num_classes, ANY_BACKBONE_RECIPES["fcos"])


def retinanet(config: ModelConfig, num_classes: int) -> Detector:
    """RetinaNet with an FPN on ``config.backbone`` (default ResNet-50)."""
    return build_any_backbone_detector(config, num_classes, ANY_BACKBONE_RECIPES["retinanet"])
