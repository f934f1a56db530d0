"""torchvision's detectors, rebuilt from torchvision's parts as its builders build them.

Building from the parts (rather than calling ``fasterrcnn_resnet50_fpn(...)``) lets the
configuration reach what the builders fix (FPN channels, the norm layer, focal-loss
settings) and keeps weight loading in visionatlas' hands. With default options the modules,
their state-dict keys and shapes are those of the torchvision builder (the tests compare
them), so torchvision's COCO checkpoints load as they are.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from functools import partial
from typing import Any

import torchvision
from torch import nn
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.detection.ssdlite import SSDLiteFeatureExtractorMobileNet, SSDLiteHead
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool, LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

from visionatlas_detection.build import Family, Options, TorchvisionRecipe, build_trunk
from visionatlas_detection.heads import FocalFCOSHead, FocalRetinaNetHead
from visionatlas_detection.models import (
    Detector,
    DetectorT,
    FasterRCNNDetector,
    FCOSDetector,
    RetinaNetDetector,
    SSDDetector,
    attach,
)

__all__ = [
    "FASTER_RCNN",
    "FCOS_FAMILY",
    "RECIPES",
    "RETINANET",
    "RETINANET_ANCHORS",
    "SSDLITE",
    "build_rcnn",
    "resnet50_fpn",
    "resnet50_recipe",
]

FASTER_RCNN = Family(
    "Faster R-CNN",
    score_key="box_score_thresh",
    nms_key="box_nms_thresh",
    detections_key="box_detections_per_img",
    proposals=True,
)
RETINANET = Family("RetinaNet", focal=True)
FCOS_FAMILY = Family("FCOS", focal=True)
SSDLITE = Family("SSDLite", fixed_size=True)

RETINANET_ANCHORS = 9
"""Anchors per location of torchvision's RetinaNet: 3 scales x 3 aspect ratios."""


def resnet50_fpn(
    options: Options,
    *,
    returned_layers: tuple[int, ...],
    extra_blocks: ExtraFPNBlock,
    fpn_norm: type[nn.Module] | None = None,
) -> tuple[BackboneWithFPN, list[nn.Module]]:
    """ResNet-50 with an FPN over ``layer<i>`` for ``i`` in ``returned_layers``.

    Returns the backbone and its stages (stem ``conv1``/``bn1``, ``layer1`` ... ``layer4``),
    the groups torchvision's ``trainable_backbone_layers`` counts from the end.
    """
    trunk = build_trunk(
        partial(torchvision.models.resnet50, weights=None, norm_layer=options.norm_layer),
        options.backbone_state,
        "resnet50",
    )
    stage2 = trunk.inplanes // 8
    backbone = BackboneWithFPN(
        trunk,
        return_layers={f"layer{k}": str(i) for i, k in enumerate(returned_layers)},
        in_channels_list=[stage2 * 2 ** (k - 1) for k in returned_layers],
        out_channels=options.fpn_channels,
        extra_blocks=extra_blocks,
        norm_layer=fpn_norm,
    )
    body = backbone.body
    stem = nn.ModuleList([body.conv1, body.bn1])
    return backbone, [stem, body.layer1, body.layer2, body.layer3, body.layer4]


def build_rcnn(
    detector: type[DetectorT],
    options: Options,
    *,
    v2: bool = False,
    v2_heads: Mapping[str, nn.Module] | None = None,
) -> DetectorT:
    """A two-stage detector on ResNet-50 + FPN as torchvision's (``_v2``) builders make it.

    ``detector`` is :class:`FasterRCNNDetector` or a subclass taking the same arguments
    (Mask R-CNN); ``v2_heads`` adds heads of the v2 layout beyond the RPN and box heads
    (e.g. Mask R-CNN's normalized ``mask_head``).
    """
    backbone, stages = resnet50_fpn(
        options,
        returned_layers=(1, 2, 3, 4),
        extra_blocks=LastLevelMaxPool(),
        fpn_norm=nn.BatchNorm2d if v2 else None,
    )
    heads: dict[str, nn.Module] = {}
    if v2:
        channels = options.fpn_channels
        heads["rpn_head"] = RPNHead(channels, 3, conv_depth=2)  # 3 aspect ratios per location
        heads["box_head"] = FastRCNNConvFCHead(
            (channels, 7, 7), [256, 256, 256, 256], [1024], norm_layer=nn.BatchNorm2d
        )
        heads.update(v2_heads or {})
    model = detector(backbone, options.num_classes, **heads, **options.detector_kwargs)
    return attach(model, num_classes=options.num_classes, stages=stages)


def resnet50_recipe(**fields: Any) -> TorchvisionRecipe:
    """A recipe for a detector on torchvision's ResNet-50 (ImageNet V1 backbone weights)."""
    return TorchvisionRecipe(
        backbone="resnet50", backbone_weights="ResNet50_Weights.IMAGENET1K_V1", **fields
    )


def _retinanet(options: Options, *, v2: bool = False) -> Detector:
    channels = options.fpn_channels
    backbone, stages = resnet50_fpn(
        options,
        returned_layers=(2, 3, 4),
        extra_blocks=LastLevelP6P7(2048 if v2 else channels, channels),
    )
    head = FocalRetinaNetHead(
        channels,
        RETINANET_ANCHORS,
        options.num_classes,
        norm_layer=partial(nn.GroupNorm, 32) if v2 else None,
        focal_alpha=options.focal_alpha,
        focal_gamma=options.focal_gamma,
    )
    if v2:
        head.regression_head._loss_type = "giou"
    model = RetinaNetDetector(backbone, options.num_classes, head=head, **options.detector_kwargs)
    return attach(model, num_classes=options.num_classes, stages=stages)


def _fcos(options: Options) -> Detector:
    channels = options.fpn_channels
    backbone, stages = resnet50_fpn(
        options, returned_layers=(2, 3, 4), extra_blocks=LastLevelP6P7(channels, channels)
    )
    head = FocalFCOSHead(
        channels,
        1,  # FCOS predicts at points: one "anchor" per location
        options.num_classes,
        focal_alpha=options.focal_alpha,
        focal_gamma=options.focal_gamma,
    )
    model = FCOSDetector(backbone, options.num_classes, head=head, **options.detector_kwargs)
    return attach(model, num_classes=options.num_classes, stages=stages)


def _normal_init(module: nn.Module) -> None:
    """SSDLite's initialisation of layers that start from scratch (std 0.03, zero bias)."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.normal_(layer.weight, mean=0.0, std=0.03)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


_SSDLITE_DEFAULTS = {
    "score_thresh": 0.001,
    "nms_thresh": 0.55,
    "detections_per_img": 300,
    "topk_candidates": 300,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
}


def _ssdlite(options: Options) -> Detector:
    norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
    trunk_norm = partial(FrozenBatchNorm2d, eps=0.001) if options.frozen_batchnorm else norm
    # torchvision's builder uses the reduced tail unless ImageNet backbone weights load
    trunk = build_trunk(
        partial(
            torchvision.models.mobilenet_v3_large,
            weights=None,
            norm_layer=trunk_norm,
            reduced_tail=not options.pretrained_backbone,
        ),
        options.backbone_state,
        "mobilenet_v3_large",
    )
    if options.backbone_state is None:
        _normal_init(trunk)
    features = trunk.features
    # stages end where the resolution halves; torchvision counts 6 of them
    starts = [0] + [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)]
    starts.append(len(features) - 1)
    stages = [features[a:b] for a, b in itertools.pairwise([*starts, len(features)])]
    extractor = SSDLiteFeatureExtractorMobileNet(features, starts[-2], norm)
    channels = [extractor.features[0][-1].out_channels, extractor.features[1][-1].out_channels]
    channels += [block[-1].out_channels for block in extractor.extra]
    anchors = DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=0.2, max_ratio=0.95)
    kwargs = {**_SSDLITE_DEFAULTS, **options.detector_kwargs}
    size = kwargs.pop("min_size", 320)
    head = SSDLiteHead(channels, anchors.num_anchors_per_location(), options.num_classes, norm)
    model = SSDDetector(extractor, anchors, (size, size), options.num_classes, head=head, **kwargs)
    return attach(model, num_classes=options.num_classes, stages=stages)


RECIPES: dict[str, TorchvisionRecipe] = {
    recipe.name: recipe
    for recipe in (
        resnet50_recipe(
            name="fasterrcnn_resnet50",
            family=FASTER_RCNN,
            construct=partial(build_rcnn, FasterRCNNDetector),
            weights="FasterRCNN_ResNet50_FPN_Weights.DEFAULT",
            legacy_eps_weights="COCO_V1",
        ),
        resnet50_recipe(
            name="fasterrcnn_resnet50_v2",
            family=FASTER_RCNN,
            construct=partial(build_rcnn, FasterRCNNDetector, v2=True),
            weights="FasterRCNN_ResNet50_FPN_V2_Weights.DEFAULT",
            frozen_batchnorm_when_pretrained=False,
        ),
        resnet50_recipe(
            name="retinanet_resnet50",
            family=RETINANET,
            construct=_retinanet,
            weights="RetinaNet_ResNet50_FPN_Weights.DEFAULT",
            legacy_eps_weights="COCO_V1",
        ),
        resnet50_recipe(
            name="retinanet_resnet50_v2",
            family=RETINANET,
            construct=partial(_retinanet, v2=True),
            weights="RetinaNet_ResNet50_FPN_V2_Weights.DEFAULT",
            frozen_batchnorm_when_pretrained=False,
            groupnorm_heads=True,
        ),
        resnet50_recipe(
            name="fcos_resnet50",
            family=FCOS_FAMILY,
            construct=_fcos,
            weights="FCOS_ResNet50_FPN_Weights.DEFAULT",
            groupnorm_heads=True,
        ),
        TorchvisionRecipe(
            name="ssdlite_mobilenet_v3",
            family=SSDLITE,
            construct=_ssdlite,
            weights="SSDLite320_MobileNet_V3_Large_Weights.DEFAULT",
            backbone="mobilenet_v3_large",
            backbone_weights="MobileNet_V3_Large_Weights.IMAGENET1K_V1",
            frozen_batchnorm_when_pretrained=False,
            default_trainable_layers=6,
            fpn=False,
        ),
    )
}
