"""Hook implementations of the segmentation plugin (imports no torch)."""

from __future__ import annotations

from visionatlas import hookimpl
from visionatlas.plugins.registrar import Registrar
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
