"""Hook implementations of the detection plugin (imports no torch)."""

from __future__ import annotations

from visionatlas import hookimpl
from visionatlas.plugins.registrar import Registrar
from visionatlas.specs import TrainingSpec
from visionatlas_detection.specs import (
    register_detection_architectures,
    register_detection_task,
)


@hookimpl
def visionatlas_api_version() -> int:
    return 1


@hookimpl
def visionatlas_register_tasks(registrar: Registrar) -> None:
    register_detection_task(registrar)


@hookimpl
def visionatlas_register_architectures(registrar: Registrar) -> None:
    """torchvision's detectors, and Faster R-CNN, FCOS and RetinaNet on any backbone."""
    register_detection_architectures(registrar)


@hookimpl
def visionatlas_register_training(registrar: Registrar) -> None:
    """Detection trains on COCO or VOC data or ``builtin:shapes`` (imported lazily)."""
    registrar.add_training(
        TrainingSpec(
            task="object_detection",
            builder="visionatlas_detection.training:DetectionTraining",
            description="COCO JSON (train/ and val/) or Pascal VOC folders, or builtin:shapes; "
            "the detectors' own losses; COCO mAP through pycocotools",
        )
    )
