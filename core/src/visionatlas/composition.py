"""Models composed of a registered backbone and a registered head."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from visionatlas.backbones.base import Backbone
from visionatlas.catalog import current_catalog
from visionatlas.config import BackboneConfig, ModelConfig
from visionatlas.errors import IncompatibleBackboneError

__all__ = ["BackboneHeadModel", "build_on_backbone", "compose"]


class BackboneHeadModel(nn.Module):
    """``head(backbone.forward_pre_logits(x))``: the shape of classifiers and regressors."""

    def __init__(self, backbone: Backbone, head: nn.Module, *, head_name: str | None = None):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.head_name = head_name

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone.forward_pre_logits(x))

    def forward_features(self, x: Tensor) -> Tensor:
        """The backbone's final feature map."""
        return self.backbone(x)

    def freeze_backbone(self, trainable_stages: int = 0) -> None:
        """Freeze the backbone (all but its last ``trainable_stages`` stages)."""
        self.backbone.freeze(trainable_stages)

    def unfreeze_backbone(self) -> None:
        self.backbone.unfreeze()

    def reset_head(
        self, num_outputs: int, *, head: str | None = None, dropout: float | None = None
    ) -> None:
        """Replace the head with a fresh one of ``num_outputs`` outputs (e.g. new classes)."""
        name = head or self.head_name
        if name is None:
            raise ValueError("this model does not know its head's name; pass head=...")
        current = getattr(self.head, "dropout", None)
        rate = dropout if dropout is not None else getattr(current, "p", 0.0)
        self.head = current_catalog().create_head(
            name, in_features=self.backbone.pre_logits_dim, num_outputs=num_outputs, dropout=rate
        )
        self.head_name = name


def compose(
    backbone: BackboneConfig,
    *,
    head: str,
    num_outputs: int,
    dropout: float | None = None,
    freeze_backbone: bool = False,
    adopt_pretrained_classifier: bool = False,
) -> BackboneHeadModel:
    """Build ``backbone`` and ``head`` from the current catalog and join them.

    ``dropout=None`` takes the backbone family's default rate. With
    ``adopt_pretrained_classifier``, a head whose final layer has the shape of the
    checkpoint's classifier (e.g. 1000 ImageNet classes) gets those weights too.
    """
    catalog = current_catalog()
    spec = catalog.get_backbone(backbone.model_name)
    trunk = catalog.create_backbone(backbone)
    rate = spec.default_drop_rate if dropout is None else dropout
    module = catalog.create_head(
        head, in_features=trunk.pre_logits_dim, num_outputs=num_outputs, dropout=rate
    )
    state = trunk.pretrained_classifier_state
    trunk.pretrained_classifier_state = None
    if adopt_pretrained_classifier and state is not None:
        _adopt(module, state)
    model = BackboneHeadModel(trunk, module, head_name=head)
    if freeze_backbone:
        model.freeze_backbone()
    return model


def build_on_backbone(
    config: ModelConfig,
    *,
    task: str,
    backbone: str,
    head: str,
    num_outputs: int,
    adopt_pretrained_classifier: bool = False,
) -> BackboneHeadModel:
    """Build the architecture named after ``backbone`` from a validated model config.

    The config may leave the backbone unset or name the same one (as a string or a
    :class:`BackboneConfig` with more options); another backbone is refused.
    """
    backbone_config = config.backbone_config(default=backbone)
    if backbone_config.model_name != backbone:
        raise IncompatibleBackboneError(
            f"{task} architecture {backbone!r} is built on backbone {backbone!r}, but the "
            f"config asks for backbone {backbone_config.model_name!r}; use "
            f"create_model({task!r}, {backbone_config.model_name!r}) instead"
        )
    return compose(
        backbone_config,
        head=config.head or head,
        num_outputs=num_outputs,
        dropout=config.dropout,
        freeze_backbone=config.freeze_backbone,
        adopt_pretrained_classifier=adopt_pretrained_classifier,
    )


def _adopt(head: nn.Module, state: dict[str, Any]) -> None:
    linear = getattr(head, "fc", None)
    weight = state.get("weight")
    if not isinstance(linear, nn.Linear) or not isinstance(weight, torch.Tensor):
        return
    if tuple(weight.shape) == tuple(linear.weight.shape):
        linear.load_state_dict(state)
