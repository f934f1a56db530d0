"""Hook implementations of the detection plugin (imports no torch)."""

from __future__ import annotations

from visionatlas import hookimpl
from visionatlas.registry import Registrar
from visionatlas_detection.specs import (
    register_detection_architectures,
    register_detection_task,
)


@hookimpl
def visionatlas_api_version() -> int:
    return 1


@hookimpl
def visionatlas_register_tasks(registry: Registrar) -> None:
    register_detection_task(registry)


@hookimpl
def visionatlas_register_architectures(registry: Registrar) -> None:
    """torchvision's detectors, and Faster R-CNN, FCOS and RetinaNet on any backbone."""
    register_detection_architectures(registry)
