"""Builder of classification models (imports torch)."""

from __future__ import annotations

from visionatlas.config import ModelConfig
from visionatlas.models.composition import BackboneHeadModel, build_on_backbone
from visionatlas_classification.plugin import HEAD, TASK


def build_classifier(config: ModelConfig, num_classes: int, *, backbone: str) -> BackboneHeadModel:
    """Backbone, pooling, its pre-logits layers, dropout and a ``num_classes`` linear layer.

    With pretrained weights and as many classes as the checkpoint's classifier (1000 for
    ImageNet), the classifier's weights load too, so the model equals torchvision's.
    """
    return build_on_backbone(
        config,
        task=TASK,
        backbone=backbone,
        head=HEAD,
        num_outputs=num_classes,
        adopt_pretrained_classifier=True,
    )
