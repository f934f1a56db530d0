"""DeepLabV3 and FCN on any registered backbone with multi-scale features.

The backbone is built from the catalog (``config.backbone``, default ResNet-50) and read
with ``forward_multiscale``: its last level feeds the main head (torchvision's
``DeepLabHead`` or ``FCNHead``), the level before the auxiliary ``FCNHead``. On a ResNet-50
at ``output_stride=8`` this is exactly torchvision's ``deeplabv3_resnet50``/``fcn_resnet50``,
with the same state dict keys.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torchvision.models.segmentation.deeplabv3 import DeepLabHead
from torchvision.models.segmentation.fcn import FCNHead

from visionatlas.catalog import current_catalog
from visionatlas.config import BackboneConfig
from visionatlas.errors import IncompatibleBackboneError
from visionatlas.models.backbones.base import Backbone
from visionatlas.specs import BackboneSpec
from visionatlas_segmentation.config import DeepLabV3Config, GenericSegmentationConfig
from visionatlas_segmentation.losses import SegmentationLoss
from visionatlas_segmentation.model import SegmentationModel
from visionatlas_segmentation.semantic_specs import DEFAULT_BACKBONE, TASK

__all__ = ["MultiscaleSegmentationModel", "deeplabv3", "default_atrous_rates", "fcn"]

_DILATABLE: dict[str, dict[int, tuple[str, Any]]] = {
    # family: {output stride: (extra_kwargs key, value)}, for backbones natively at stride 32
    "resnet": {
        8: ("replace_stride_with_dilation", [False, True, True]),
        16: ("replace_stride_with_dilation", [False, False, True]),
    },
    "mobilenet_v3": {16: ("dilated", True)},
}


class MultiscaleSegmentationModel(SegmentationModel):
    """A segmentation head on a visionatlas :class:`~visionatlas.models.backbones.base.Backbone`."""

    backbone: Backbone

    def forward_features(self, images: Tensor) -> dict[str, Tensor]:
        return self.backbone.forward_multiscale(images)

    def backbone_stages(self) -> list[nn.Module]:
        return self.backbone.stages()


def deeplabv3(config: DeepLabV3Config, num_classes: int) -> MultiscaleSegmentationModel:
    """DeepLabV3 (ASPP head) on ``config.backbone``."""
    return _build(config, num_classes, architecture="deeplabv3")


def fcn(config: GenericSegmentationConfig, num_classes: int) -> MultiscaleSegmentationModel:
    """FCN on ``config.backbone``."""
    return _build(config, num_classes, architecture="fcn")


def default_atrous_rates(output_stride: int) -> tuple[int, ...]:
    """ASPP rates reaching as far in input pixels as (12, 24, 36) at output stride 8."""
    return tuple(max(1, round(rate * 8 / output_stride)) for rate in (12, 24, 36))


def _accepted(architecture: str) -> str:
    names = current_catalog().get_architecture(TASK, architecture).compatible_backbones
    return ", ".join(names) if names else "none are registered"


def _check_backbone(spec: BackboneSpec, architecture: str) -> None:
    if spec.multiscale:
        return
    levels = ", ".join(f"{lv.name} (stride {lv.stride})" for lv in spec.feature_levels)
    raise IncompatibleBackboneError(
        f"segmentation architecture {architecture!r} needs a backbone with multi-scale "
        "features (the last level feeds the main head, the one before the auxiliary head), "
        f"but backbone {spec.name!r} has a single feature level ({levels or 'none listed'}). "
        f"Accepted backbones: {_accepted(architecture)}"
    )


def _with_output_stride(
    config: BackboneConfig, spec: BackboneSpec, output_stride: int | None
) -> BackboneConfig:
    """``config`` with the dilation that brings the last level to ``output_stride``."""
    native = spec.feature_levels[-1].stride
    if output_stride is None or output_stride == native:
        return config
    option = _DILATABLE.get(spec.family, {}).get(output_stride) if native == 32 else None
    if option is None:
        raise IncompatibleBackboneError(
            f"backbone {spec.name!r} ({spec.family}) cannot run at output_stride="
            f"{output_stride}; its own stride is {native}. Dilation is available for ResNets "
            "(ResNet-18 and deeper, ResNeXt, Wide ResNet: 8 or 16) and MobileNetV3 (16)"
        )
    key, value = option
    if key in config.extra_kwargs:
        raise ValueError(
            f"output_stride={output_stride} and the backbone's extra_kwargs[{key!r}] both set "
            "its dilation; set only one of them"
        )
    return config.model_copy(update={"extra_kwargs": {**config.extra_kwargs, key: value}})


def _create_backbone(config: GenericSegmentationConfig, architecture: str) -> Backbone:
    catalog = current_catalog()
    backbone_config = config.backbone_config(DEFAULT_BACKBONE)
    spec = catalog.get_backbone(backbone_config.model_name)
    _check_backbone(spec, architecture)
    if backbone_config.num_classes:
        raise ValueError(
            f"the backbone of a segmentation model is a feature extractor; its config must "
            f"keep num_classes=0, got {backbone_config.num_classes}"
        )
    dilated = _with_output_stride(backbone_config, spec, config.output_stride)
    try:
        backbone = catalog.create_backbone(dilated)
    except ValueError as err:
        if dilated is backbone_config:
            raise
        raise IncompatibleBackboneError(
            f"backbone {spec.name!r} cannot be dilated to output_stride={config.output_stride}: "
            f"{err}"
        ) from err
    stride = backbone.feature_info[-1].stride
    if config.output_stride is not None and stride != config.output_stride:
        raise IncompatibleBackboneError(
            f"backbone {spec.name!r} was asked for output_stride={config.output_stride} but "
            f"its last level has stride {stride}"
        )
    if not backbone.multiscale:
        raise IncompatibleBackboneError(
            f"backbone {spec.name!r} built with a single feature level; "
            f"{architecture!r} needs two or more"
        )
    # Segmentation reads feature maps only: drop the layers that act on the pooled vector.
    backbone.pre_logits = nn.Identity()
    backbone.pretrained_classifier_state = None
    return backbone


def _build(
    config: GenericSegmentationConfig, num_classes: int, *, architecture: str
) -> MultiscaleSegmentationModel:
    if config.pretrained_scope == "full":
        raise ValueError(
            f"{architecture!r} on an arbitrary backbone has no whole-model checkpoint; use "
            "pretrained_scope='backbone' (or leave it unset) for the backbone's ImageNet "
            "weights, or a torchvision architecture such as 'deeplabv3_resnet50'"
        )
    backbone = _create_backbone(config, architecture)
    main, aux = backbone.feature_info[-1], backbone.feature_info[-2]
    classifier: nn.Module
    if isinstance(config, DeepLabV3Config):
        rates = config.atrous_rates or default_atrous_rates(main.stride)
        classifier = DeepLabHead(main.channels, num_classes, rates)
    else:
        classifier = FCNHead(main.channels, num_classes)
    aux_classifier = FCNHead(aux.channels, num_classes) if config.aux_loss is not False else None
    model = MultiscaleSegmentationModel(
        backbone,
        classifier,
        aux_classifier,
        criterion=SegmentationLoss.from_config(config, num_classes),
        main_key=main.name,
        aux_key=aux.name if aux_classifier is not None else None,
    )
    if config.dropout is not None:
        model.set_head_dropout(config.dropout)
    trainable = config.backbone_trainable_stages
    if trainable is not None:
        model.freeze_backbone(trainable)
    return model
