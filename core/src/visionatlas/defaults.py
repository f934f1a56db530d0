"""Default fine-tuning hyperparameters derived from a backbone's metadata."""

from __future__ import annotations

import dataclasses

from visionatlas.specs import BackboneSpec, Hyperparameters

__all__ = ["fine_tuning_defaults"]

_TRANSFORMER_FAMILIES = frozenset({"vit", "swin"})


def fine_tuning_defaults(backbone: BackboneSpec, **overrides: object) -> Hyperparameters:
    """Hyperparameters for fine-tuning a model built on ``backbone``.

    Transformers get AdamW at 1e-4 (they diverge at CNN rates); batch size shrinks with the
    parameter count so a default run fits a 16 GB GPU; the input size is the one the
    backbone's pretrained weights were evaluated at.
    """
    params = backbone.num_params or 0
    transformer = backbone.family in _TRANSFORMER_FAMILIES
    batch = 64 if params < 10_000_000 else 32 if params < 60_000_000 else 16
    size = backbone.default_input_size
    if size > 300 and batch > 16:
        batch //= 2
    base = Hyperparameters(
        learning_rate=1e-4 if transformer else 1e-3,
        batch_size=batch,
        input_size=(size, size),
        epochs=30,
        optimizer="adamw",
        weight_decay=0.05 if transformer else 1e-4,
    )
    return dataclasses.replace(base, **overrides) if overrides else base  # type: ignore[arg-type]
