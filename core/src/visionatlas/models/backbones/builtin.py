"""The built-in plugin that registers the torchvision backbones.

Plain data only: importing this module imports neither torch nor torchvision. The specs are
in :mod:`visionatlas.models.backbones.torchvision_specs`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from visionatlas.models.backbones.torchvision_specs import BACKBONES
from visionatlas.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from visionatlas.plugins.registrar import Registrar

__all__ = ["BACKBONES", "visionatlas_api_version", "visionatlas_register_backbones"]


@hookimpl
def visionatlas_api_version() -> int:
    return 1


@hookimpl
def visionatlas_register_backbones(registrar: Registrar) -> None:
    for spec in BACKBONES:
        registrar.add_backbone(spec)
