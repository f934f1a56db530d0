"""Builder of regression models (imports torch)."""

from __future__ import annotations

from visionatlas.models.composition import BackboneHeadModel, build_on_backbone
from visionatlas_regression.config import RegressionConfig
from visionatlas_regression.plugin import HEAD, TASK


def build_regressor(
    config: RegressionConfig, num_classes: int, *, backbone: str
) -> BackboneHeadModel:
    """Backbone, pooling, its pre-logits layers, dropout and ``num_outputs`` linear outputs.

    ``num_outputs`` unset means ``num_classes`` outputs (1 by default), so callers that
    always pass ``num_classes`` work; both given and different is an error.
    """
    outputs = config.num_outputs if config.num_outputs is not None else num_classes
    if num_classes not in (1, outputs):
        raise ValueError(
            f"num_classes={num_classes} and config num_outputs={outputs} disagree; regression "
            "uses num_outputs, so leave num_classes unset or equal to it"
        )
    return build_on_backbone(config, task=TASK, backbone=backbone, head=HEAD, num_outputs=outputs)
