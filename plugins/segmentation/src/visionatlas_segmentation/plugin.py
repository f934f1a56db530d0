"""Hook implementations of the segmentation plugin (imports no torch)."""

from __future__ import annotations

from visionatlas import hookimpl
from visionatlas.plugins.registrar import Registrar
from visionatlas.specs import TrainingSpec
from visionatlas_segmentation.instance_specs import (
    register_instance_architectures,
    register_instance_task,
)
from visionatlas_segmentation.semantic_specs import (
    register_semantic_architectures,
    register_semantic_task,
)


@hookimpl
def visionatlas_api_version() -> int:
    return 1


@hookimpl
def visionatlas_register_tasks(registrar: Registrar) -> None:
    """The ``segmentation`` (semantic) and ``instance_segmentation`` tasks."""
    register_semantic_task(registrar)
    register_instance_task(registrar)


@hookimpl
def visionatlas_register_architectures(registrar: Registrar) -> None:
    """torchvision's semantic models, the any-backbone ``deeplabv3``/``fcn``, Mask R-CNN."""
    register_semantic_architectures(registrar)
    register_instance_architectures(registrar)


@hookimpl
def visionatlas_register_training(registrar: Registrar) -> None:
    """Both tasks train on folders people have, or ``builtin:shapes`` (imported lazily)."""
    registrar.add_training(
        TrainingSpec(
            task="segmentation",
            builder="visionatlas_segmentation.semantic_training:SemanticSegmentationTraining",
            description="image and mask folders (palette or grey PNGs, 255 ignored), Pascal "
            "VOC or Cityscapes, or builtin:shapes; mean IoU, pixel accuracy, per-class IoU",
        )
    )
    registrar.add_training(
        TrainingSpec(
            task="instance_segmentation",
            builder="visionatlas_segmentation.instance_training:InstanceSegmentationTraining",
            description="COCO JSON with polygon or RLE masks (train/ and val/), or "
            "builtin:shapes; Mask R-CNN's own losses; COCO box and mask mAP",
        )
    )
