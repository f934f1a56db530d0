"""The regression config: ``ModelConfig`` plus the number of regressed values."""

from __future__ import annotations

from pydantic import Field

from visionatlas.config import ModelConfig

__all__ = ["RegressionConfig"]


class RegressionConfig(ModelConfig):
    """Config of regression architectures."""

    num_outputs: int = Field(default=1, ge=1, description="Number of regressed values")
