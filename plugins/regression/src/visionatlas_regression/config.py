"""The regression config: ``ModelConfig`` plus the number of regressed values."""

from __future__ import annotations

from pydantic import Field

from visionatlas.config import MAX_NUM_CLASSES, ModelConfig

__all__ = ["RegressionConfig"]


class RegressionConfig(ModelConfig):
    """Config of regression architectures."""

    num_outputs: int | None = Field(
        default=None,
        ge=1,
        le=MAX_NUM_CLASSES,
        strict=True,
        description="Number of regressed values; default: num_classes (1 unless given)",
    )
