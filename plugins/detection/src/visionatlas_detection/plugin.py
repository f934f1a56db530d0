"""Hook implementations of the detection plugin (imports no torch)."""

from __future__ import annotations

from visionatlas import hookimpl
from visionatlas.plugins.registrar import Registrar
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
