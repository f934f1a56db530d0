"""Validated model and backbone configs (pydantic v2).

Unknown keys are rejected, and fields where coercion is a trap are strict: booleans accept
only ``true``/``false`` and numbers only numbers (an int is fine for a float field), so a
stored ``"pretrained": "true"`` or ``"dropout": "0.3"`` is an error, not a guess. Task
plugins extend :class:`ModelConfig` with their own fields (for example regression's
``num_outputs``, strict in the same way) and name the subclass in their architecture's
``config_class``; the core never needs to know those fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["MAX_NUM_CLASSES", "BackboneConfig", "ModelConfig", "validate_num_classes"]

MAX_NUM_CLASSES = 1_000_000
"""The largest ``num_classes`` (or ``num_outputs``) a model may have.

Beyond it the final layer alone would need gigabytes (4 GB per 1,000 input features at the
limit), so a larger count is taken for a mistake and refused before anything is allocated.
"""


class BackboneConfig(BaseModel):
    """How to build a backbone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str = Field(default="resnet50", min_length=1, description="Backbone key")
    pretrained: bool = Field(default=False, strict=True, description="Load pretrained weights")
    num_classes: int = Field(
        default=0,
        ge=0,
        le=MAX_NUM_CLASSES,
        strict=True,
        description="0 for a feature extractor; N adds a linear classifier",
    )
    drop_rate: float = Field(default=0.0, ge=0.0, lt=1.0, strict=True, description="Dropout rate")
    drop_path_rate: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        strict=True,
        description="Stochastic depth rate (families that have it)",
    )
    weights: str | None = Field(
        default=None,
        description="Weights enum member, e.g. 'IMAGENET1K_V2'; default: the family's default",
    )
    weights_path: Path | None = Field(
        default=None, description="Local weights file (.pth, .pt or .safetensors)"
    )
    extra_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Extra keyword arguments for the family's builder"
    )


class ModelConfig(BaseModel):
    """How to build a model from the catalog."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backbone: str | BackboneConfig | None = Field(
        default=None, description="Backbone key or config; default: the architecture's own"
    )
    head: str | None = Field(default=None, description="Head key; default: the task's head")
    pretrained: bool = Field(default=False, strict=True, description="Load pretrained weights")
    freeze_backbone: bool = Field(default=False, strict=True, description="Train only the head")
    dropout: float | None = Field(
        default=None,
        ge=0.0,
        lt=1.0,
        strict=True,
        description="Dropout before the final layer; default: the backbone family's rate",
    )
    weights_path: Path | None = Field(default=None, description="Local weights file")

    @model_validator(mode="after")
    def _one_source_of_pretrained(self) -> ModelConfig:
        bb = self.backbone
        explicit = "pretrained" in self.model_fields_set
        if isinstance(bb, BackboneConfig) and explicit and bb.pretrained != self.pretrained:
            raise ValueError(
                "pretrained is set both on the model config and on its backbone config "
                f"with different values ({self.pretrained} and {bb.pretrained}); set it once"
            )
        return self

    def backbone_config(self, default: str) -> BackboneConfig:
        """The effective :class:`BackboneConfig`, ``default`` naming the backbone if unset."""
        bb = self.backbone
        if isinstance(bb, BackboneConfig):
            if self.weights_path is not None and bb.weights_path is None:
                return bb.model_copy(update={"weights_path": self.weights_path})
            return bb
        return BackboneConfig(
            model_name=bb or default,
            pretrained=self.pretrained or self.weights_path is not None,
            weights_path=self.weights_path,
        )


def validate_num_classes(value: Any) -> int:
    """Validate ``num_classes``: an int from 1 to :data:`MAX_NUM_CLASSES`.

    Raises a ``ValidationError`` naming ``num_classes`` and the bound that failed.
    """
    return _NumClasses.model_validate({"num_classes": value}).num_classes


class _NumClasses(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, title="num_classes")

    num_classes: int = Field(
        ge=1, le=MAX_NUM_CLASSES, description="Number of classes (outputs) of the model"
    )
