"""Hook implementations of the oriented-detection plugin (imports no torch)."""

from __future__ import annotations

from visionatlas import hookimpl
from visionatlas.plugins.registrar import Registrar
from visionatlas.specs import TrainingSpec
from visionatlas_oriented.specs import (
    TASK,
    register_oriented_architectures,
    register_oriented_task,
)


@hookimpl
def visionatlas_api_version() -> int:
    return 1


@hookimpl
def visionatlas_register_tasks(registrar: Registrar) -> None:
    register_oriented_task(registrar)


@hookimpl
def visionatlas_register_architectures(registrar: Registrar) -> None:
    """Rotated FCOS (on ResNet-50, and on any backbone) and rotated RetinaNet."""
    register_oriented_architectures(registrar)


@hookimpl
def visionatlas_register_training(registrar: Registrar) -> None:
    """Oriented detection trains on DOTA folders or ``builtin:shapes`` (imported lazily)."""
    registrar.add_training(
        TrainingSpec(
            task=TASK,
            builder="visionatlas_oriented.training:OrientedTraining",
            description="DOTA folders (images/ and labelTxt/, train/ and val/) or "
            "builtin:shapes; the detectors' own losses; rotated mAP@0.5 as DOTA evaluates it",
        )
    )
