"""Architectures derived from every registered backbone (torch-free, for plugin hooks)."""

from __future__ import annotations

from visionatlas.defaults import fine_tuning_defaults
from visionatlas.models.heads.params import linear_head_params
from visionatlas.plugins.lazy import LazyCall
from visionatlas.plugins.registrar import Registrar
from visionatlas.specs import ArchitectureSpec, Builder

__all__ = ["register_backbone_architectures"]


def register_backbone_architectures(
    registrar: Registrar,
    *,
    task: str,
    builder: str,
    default_num_classes: int,
    config_class: Builder | None = None,
) -> None:
    """Register, for ``task``, one architecture per backbone, named after the backbone.

    ``builder`` is a ``"module:function"`` reference called as
    ``function(config, num_classes, backbone=name)``. Parameter counts assume a linear head
    of ``default_num_classes`` outputs over the backbone's pre-logits vector.
    """
    for backbone in registrar.backbones.values():
        num_params = None
        if backbone.num_params is not None:
            num_params = backbone.num_params + linear_head_params(
                backbone.pre_logits_dim, default_num_classes
            )
        registrar.add_architecture(
            ArchitectureSpec(
                task=task,
                name=backbone.name,
                builder=LazyCall(builder, backbone=backbone.name),
                display_name=backbone.title,
                note=backbone.note,
                num_params=num_params,
                default_num_classes=default_num_classes,
                hyperparameters=fine_tuning_defaults(backbone),
                pretrained_available=backbone.pretrained_weights is not None,
                backbone=backbone.name,
                config_class=config_class,
                tags=backbone.tags,
            )
        )
