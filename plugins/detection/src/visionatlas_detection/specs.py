"""Catalog metadata of the detection architectures (plain data, imports no torch).

Shared with the segmentation plugin, whose Mask R-CNN architectures use the same options,
backbone rules and defaults.
"""

from __future__ import annotations

from collections.abc import Iterable

from visionatlas.plugins.registrar import Registrar
from visionatlas.specs import ArchitectureSpec, BackboneSpec, Hyperparameters, TaskSpec

__all__ = [
    "COCO_CLASSES",
    "CONFIG_CLASS",
    "EXAMPLE_INPUTS",
    "ONE_STAGE_STRIDES",
    "RCNN_STRIDES",
    "TASK",
    "compatible_backbones",
    "incompatibility",
    "rcnn_hyperparameters",
    "register_detection_architectures",
    "register_detection_task",
    "register_generic_architectures",
]

TASK = "object_detection"
COCO_CLASSES = 91
"""torchvision's COCO label space: 90 category ids (with gaps) plus the background, 0."""
CONFIG_CLASS = "visionatlas_detection.config:DetectionConfig"
EXAMPLE_INPUTS = "visionatlas_detection.inputs:example_images"
DEFAULT_BACKBONE = "resnet50"

RCNN_STRIDES = (4, 8, 16, 32)
"""Backbone levels Faster/Mask R-CNN use (FPN P2-P5; P6 is a max-pool of P5)."""
ONE_STAGE_STRIDES = (8, 16, 32)
"""Backbone levels FCOS and RetinaNet use (FPN P3-P5; P6 and P7 are extra convolutions)."""


def rcnn_hyperparameters() -> Hyperparameters:
    """torchvision's R-CNN recipe (SGD, lr 0.02 for 16 images, 26 epochs) scaled to 4 images."""
    return Hyperparameters(
        learning_rate=0.005,
        batch_size=4,
        input_size=(800, 1333),
        epochs=26,
        optimizer="sgd",
        weight_decay=1e-4,
    )


def _one_stage_hyperparameters() -> Hyperparameters:
    """torchvision's FCOS/RetinaNet recipe (lr 0.01 for 16 images, 26 epochs), at 4 images."""
    return Hyperparameters(
        learning_rate=0.0025,
        batch_size=4,
        input_size=(800, 1333),
        epochs=26,
        optimizer="sgd",
        weight_decay=1e-4,
    )


def _ssdlite_hyperparameters() -> Hyperparameters:
    """torchvision's SSDLite recipe (lr 0.15 for 192 images, 600 epochs), at 32 images."""
    return Hyperparameters(
        learning_rate=0.025,
        batch_size=32,
        input_size=(320, 320),
        epochs=600,
        optimizer="sgd",
        weight_decay=4e-5,
    )


def incompatibility(backbone: BackboneSpec, strides: Iterable[int]) -> str | None:
    """Why ``backbone`` cannot feed a pyramid over ``strides``, or ``None`` if it can."""
    wanted = tuple(strides)
    offered = [level.stride for level in backbone.feature_levels]
    if len(offered) < 2:
        where = f" (stride {offered[0]})" if offered else ""
        return f"backbone {backbone.name!r} has a single feature level{where}, not multi-scale"
    missing = [s for s in wanted if s not in offered]
    if missing:
        return (
            f"backbone {backbone.name!r} offers levels at strides {offered}, lacking "
            f"{missing} (needed: {list(wanted)})"
        )
    return None


def compatible_backbones(
    backbones: Iterable[BackboneSpec], strides: Iterable[int]
) -> tuple[str, ...]:
    """Names of the backbones with feature levels at every one of ``strides``, sorted."""
    wanted = tuple(strides)
    return tuple(sorted(b.name for b in backbones if incompatibility(b, wanted) is None))


def register_detection_task(registrar: Registrar) -> None:
    registrar.add_task(
        TaskSpec(
            name=TASK,
            display_name="Object detection",
            description=(
                "Boxes, labels and scores per image. Eval: a list of (3, H, W) images in "
                "[0, 1] -> a list of {boxes (K, 4) xyxy pixels, labels (K,), scores (K,)}; "
                "training: images and targets -> a dict of losses."
            ),
            demo_architecture="ssdlite_mobilenet_v3",
            example_inputs=EXAMPLE_INPUTS,
            input_kind="image_list",
        )
    )


def _builder(name: str) -> str:
    return f"visionatlas_detection.builders:{name}"


def _spec(
    name: str, display_name: str, note: str, num_params: int, hyperparameters: Hyperparameters,
    backbone: str = DEFAULT_BACKBONE,
) -> ArchitectureSpec:  # fmt: skip
    return ArchitectureSpec(
        task=TASK,
        name=name,
        builder=_builder(name),
        display_name=display_name,
        note=note,
        num_params=num_params,
        default_num_classes=COCO_CLASSES,
        hyperparameters=hyperparameters,
        pretrained_available=True,
        backbone=backbone,
        compatible_backbones=(backbone,),
        config_class=CONFIG_CLASS,
        tags=("detection", "torchvision", "coco"),
    )


def register_detection_architectures(registrar: Registrar) -> None:
    """The torchvision detectors, and the any-backbone ones with their compatible backbones."""
    rcnn, one_stage = rcnn_hyperparameters(), _one_stage_hyperparameters()
    specs = [
        _spec("fasterrcnn_resnet50", "Faster R-CNN ResNet-50 FPN",
              "Two-stage; COCO box AP 37.0", 41_808_406, rcnn),
        _spec("fasterrcnn_resnet50_v2", "Faster R-CNN ResNet-50 FPN v2",
              "Two-stage, improved recipe; COCO box AP 46.7", 43_712_278, rcnn),
        _spec("fcos_resnet50", "FCOS ResNet-50 FPN",
              "Anchor-free one-stage; COCO box AP 39.2", 32_322_720, one_stage),
        _spec("retinanet_resnet50", "RetinaNet ResNet-50 FPN",
              "One-stage, focal loss; COCO box AP 36.4", 34_068_119, one_stage),
        _spec("retinanet_resnet50_v2", "RetinaNet ResNet-50 FPN v2",
              "One-stage, improved recipe; COCO box AP 41.5", 38_198_935, one_stage),
        _spec("ssdlite_mobilenet_v3", "SSDLite MobileNetV3-Large",
              "Mobile, 320x320 input; COCO box AP 21.3", 3_440_060, _ssdlite_hyperparameters(),
              backbone="mobilenet_v3_large"),
    ]  # fmt: skip
    for spec in specs:
        registrar.add_architecture(spec)
    register_generic_architectures(
        registrar,
        task=TASK,
        builders={
            "fasterrcnn": ("Faster R-CNN", RCNN_STRIDES, rcnn, 41_808_406),
            "fcos": ("FCOS", ONE_STAGE_STRIDES, one_stage, 32_322_720),
            "retinanet": ("RetinaNet", ONE_STAGE_STRIDES, one_stage, 34_068_119),
        },
        module="visionatlas_detection.builders",
    )


def register_generic_architectures(
    registrar: Registrar,
    *,
    task: str,
    builders: dict[str, tuple[str, tuple[int, ...], Hyperparameters, int]],
    module: str,
) -> None:
    """Register any-backbone architectures: ``name -> (title, strides, defaults, num_params)``.

    ``compatible_backbones`` lists every registered backbone with levels at ``strides``;
    ``num_params`` is the count on the default backbone (ResNet-50) with default options.
    """
    backbones = list(registrar.backbones.values())
    for name, (title, strides, hyperparameters, num_params) in builders.items():
        registrar.add_architecture(
            ArchitectureSpec(
                task=task,
                name=name,
                builder=f"{module}:{name}",
                display_name=f"{title} (any backbone)",
                note=f"FPN on any multi-scale backbone (strides {'/'.join(map(str, strides))})",
                num_params=num_params,
                default_num_classes=COCO_CLASSES,
                hyperparameters=hyperparameters,
                pretrained_available=True,
                backbone=DEFAULT_BACKBONE,
                compatible_backbones=compatible_backbones(backbones, strides),
                config_class=CONFIG_CLASS,
                tags=("detection", "any-backbone"),
            )
        )
