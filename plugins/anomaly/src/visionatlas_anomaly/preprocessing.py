"""The preprocessing a detector was fitted with, saved with it and applied when scoring files."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Preprocessing"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_Side = Annotated[int, Strict(), Field(ge=1)]
_Mean = Annotated[float, Strict(), Field(ge=0.0, le=1.0)]
_Std = Annotated[float, Strict(), Field(gt=0.0)]


class Preprocessing(BaseModel):
    """How image files become the detector's input, as :meth:`UninformedStudents.fit` saw it.

    Files are read as RGB, scaled to [0, 1] and resized (PIL bilinear) to ``image_size``;
    inside the model, images are normalized with ``mean`` and ``std`` per channel.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    image_size: tuple[_Side, _Side] = Field(description="(height, width) of the fitted images")
    color_mode: Literal["RGB"] = Field(default="RGB", description="Channels files are read as")
    resize: Literal["bilinear"] = Field(
        default="bilinear", description="Resampling of files to image_size (PIL bilinear)"
    )
    mean: tuple[_Mean, _Mean, _Mean] = Field(
        default=IMAGENET_MEAN, description="Per-channel mean subtracted inside the model"
    )
    std: tuple[_Std, _Std, _Std] = Field(
        default=IMAGENET_STD, description="Per-channel deviation divided by inside the model"
    )
