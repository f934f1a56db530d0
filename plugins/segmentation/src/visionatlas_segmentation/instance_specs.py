"""Registration of the instance-segmentation task and its architectures (imports no torch).

Called from :mod:`visionatlas_segmentation.plugin`; filled in by the Mask R-CNN work.
"""

from __future__ import annotations

from visionatlas.registry import Registrar


def register_instance_task(registry: Registrar) -> None:
    """Register the ``instance_segmentation`` task."""


def register_instance_architectures(registry: Registrar) -> None:
    """Register ``maskrcnn_resnet50`` and the generic ``maskrcnn``."""
