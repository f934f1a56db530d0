"""Registration of the instance-segmentation task and its architectures (imports no torch).

Called from :mod:`visionatlas_segmentation.plugin`. The builders live in
:mod:`visionatlas_segmentation.instance`; options, input checks and weight loading are the
detection plugin's (``visionatlas_detection``).
"""

from __future__ import annotations

from visionatlas.plugins.registrar import Registrar
from visionatlas.specs import ArchitectureSpec, TaskSpec
from visionatlas_detection.specs import (
    COCO_CLASSES,
    CONFIG_CLASS,
    EXAMPLE_INPUTS,
    RCNN_STRIDES,
    rcnn_hyperparameters,
    register_generic_architectures,
)

INSTANCE_TASK = "instance_segmentation"
_BUILDERS = "visionatlas_segmentation.instance"


def register_instance_task(registrar: Registrar) -> None:
    """Register the ``instance_segmentation`` task."""
    registrar.add_task(
        TaskSpec(
            name=INSTANCE_TASK,
            display_name="Instance segmentation",
            description=(
                "A box, label, score and mask per object. Eval: a list of (3, H, W) images in "
                "[0, 1] -> a list of {boxes (K, 4), labels (K,), scores (K,), masks "
                "(K, 1, H, W) probabilities}; training: images and targets with masks -> a "
                "dict of losses."
            ),
            demo_architecture="maskrcnn_resnet50",
            example_inputs=EXAMPLE_INPUTS,
            input_kind="image_list",
        )
    )


def _spec(name: str, display_name: str, note: str, num_params: int) -> ArchitectureSpec:
    return ArchitectureSpec(
        task=INSTANCE_TASK,
        name=name,
        builder=f"{_BUILDERS}:{name}",
        display_name=display_name,
        note=note,
        num_params=num_params,
        default_num_classes=COCO_CLASSES,
        hyperparameters=rcnn_hyperparameters(),
        pretrained_available=True,
        backbone="resnet50",
        compatible_backbones=("resnet50",),
        config_class=CONFIG_CLASS,
        tags=("instance-segmentation", "torchvision", "coco"),
    )


def register_instance_architectures(registrar: Registrar) -> None:
    """Register ``maskrcnn_resnet50`` (and its v2) and the generic ``maskrcnn``."""
    registrar.add_architecture(
        _spec(
            "maskrcnn_resnet50",
            "Mask R-CNN ResNet-50 FPN",
            "COCO box AP 37.9, mask AP 34.6",
            44_454_513,
        )
    )
    registrar.add_architecture(
        _spec(
            "maskrcnn_resnet50_v2",
            "Mask R-CNN ResNet-50 FPN v2",
            "Improved recipe; COCO box AP 47.4, mask AP 41.8",
            46_359_409,
        )
    )
    register_generic_architectures(
        registrar,
        task=INSTANCE_TASK,
        builders={"maskrcnn": ("Mask R-CNN", RCNN_STRIDES, rcnn_hyperparameters(), 44_454_513)},
        module=_BUILDERS,
    )
