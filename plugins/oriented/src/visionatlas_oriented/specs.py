"""Catalog metadata of the oriented-detection task and architectures (plain data, no torch)."""

from __future__ import annotations

from visionatlas.plugins.registrar import Registrar
from visionatlas.specs import ArchitectureSpec, Hyperparameters, TaskSpec
from visionatlas_detection.specs import ONE_STAGE_STRIDES, compatible_backbones

__all__ = ["CONFIG_CLASS", "TASK", "register_oriented_architectures", "register_oriented_task"]

TASK = "oriented_object_detection"
CONFIG_CLASS = "visionatlas_oriented.config:OrientedConfig"
DOTA_CLASSES = 16
"""DOTA v1.0's 15 categories plus the background: the default label space."""


def _hyperparameters() -> Hyperparameters:
    """The one-stage detectors' recipe at 4 images (SGD, lr 0.0025) on DOTA's 12 epochs."""
    return Hyperparameters(
        learning_rate=0.0025,
        batch_size=4,
        input_size=(800, 1333),
        epochs=12,
        optimizer="sgd",
        weight_decay=1e-4,
    )


def register_oriented_task(registrar: Registrar) -> None:
    registrar.add_task(
        TaskSpec(
            name=TASK,
            display_name="Oriented object detection",
            description=(
                "Rotated boxes, labels and scores per image. Eval: a list of (3, H, W) images "
                "in [0, 1] -> a list of {boxes (K, 5) (cx, cy, w, h, angle) pixels and radians, "
                "le90, labels (K,), scores (K,), polygons (K, 4, 2)}; training: images and "
                "targets -> a dict of losses."
            ),
            demo_architecture="rotated_fcos",
            example_inputs="visionatlas_detection.inputs:example_images",
            input_kind="image_list",
        )
    )


# (name, display name, note, builder, parameters on ResNet-50 with 16 classes, backbones)
_ARCHITECTURES = (
    ("rotated_fcos_resnet50", "Rotated FCOS ResNet-50 FPN",
     "Seed 001's oriented detector: ResNet-50 + FPN, class, centre-ness, distances and angle",
     "rotated_fcos_resnet50", 32_149_850, ("resnet50",)),
    ("rotated_fcos", "Rotated FCOS (any backbone)",
     "Anchor-free oriented one-stage detector on any multi-scale backbone (strides 8/16/32)",
     "rotated_fcos", 32_149_850, None),
    ("rotated_retinanet", "Rotated RetinaNet (any backbone)",
     "Oriented one-stage detector, 9 horizontal anchors per location, focal loss",
     "rotated_retinanet", 32_516_340, None),
)  # fmt: skip


def register_oriented_architectures(registrar: Registrar) -> None:
    """The rotated detectors, with every registered backbone that has levels at 8/16/32."""
    any_backbone = compatible_backbones(registrar.backbones.values(), ONE_STAGE_STRIDES)
    for name, title, note, builder, params, backbones in _ARCHITECTURES:
        registrar.add_architecture(
            ArchitectureSpec(
                task=TASK,
                name=name,
                builder=f"visionatlas_oriented.builders:{builder}",
                display_name=title,
                note=note,
                num_params=params,
                default_num_classes=DOTA_CLASSES,
                hyperparameters=_hyperparameters(),
                pretrained_available=True,
                backbone="resnet50",
                compatible_backbones=backbones or any_backbone,
                config_class=CONFIG_CLASS,
                tags=("oriented", "rotated-boxes", "dota")
                + (() if backbones else ("any-backbone",)),
            )
        )
