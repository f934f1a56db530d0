"""The training pieces of image regression (a :class:`~visionatlas.training.protocol.TaskTraining`).

Data: CSV files of image paths and numeric targets (see :mod:`visionatlas_regression.data`)
or ``builtin:digits``. Items are ``(image, targets)``; batches ``(images, targets)`` with
``targets`` a ``(N, T)`` float tensor, one column per target. Loss: mean squared error.
Metrics: MAE, RMSE and R2 (averaged over targets), from torchmetrics. Mixup, cutmix and
label smoothing do not apply and are refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from visionatlas.training.images import builtin_name
from visionatlas.training.protocol import DataRequest, LossOptions, TrainingData

if TYPE_CHECKING:
    from torch import Tensor
    from torchmetrics import MetricCollection

__all__ = ["RegressionTraining"]


class RegressionTraining:
    """:class:`~visionatlas.training.protocol.TaskTraining` of the ``regression`` task."""

    task = "regression"
    monitor = "val/mae"
    monitor_mode: Literal["min", "max"] = "min"
    builtin_datasets: Mapping[str, str] = MappingProxyType({})

    def __init__(self) -> None:
        from visionatlas_regression.digits import DIGITS_DESCRIPTION

        self.builtin_datasets = MappingProxyType({"digits": DIGITS_DESCRIPTION})

    def prepare_data(self, source: str, request: DataRequest) -> TrainingData:
        """Read a CSV (or a folder with ``train.csv``), or write and read ``builtin:digits``."""
        from visionatlas_regression.data import read_csv_data

        name = builtin_name(source, self.builtin_datasets, self.task)
        if name is None:
            return read_csv_data(Path(source), request)
        from visionatlas_regression.digits import digits_folder

        folder = digits_folder(request.cache_dir)
        # a mirrored digit is another digit (or none): no flips for the default preset
        augment = "light" if request.augment == "default" else request.augment
        data = read_csv_data(folder, request, augment=augment)
        data.source = source
        data.description = f"{source} ({self.builtin_datasets[name]}) at {data.description}"
        return data

    def collate(self, items: Sequence[Any]) -> tuple[Tensor, Tensor]:
        """``(images, targets)``: ``(N, 3, H, W)`` and ``(N, T)`` float32 tensors."""
        import torch

        if not items:
            raise ValueError("cannot collate an empty batch")
        images = torch.stack([item[0] for item in items])
        targets = torch.tensor([list(item[1]) for item in items], dtype=torch.float32)
        return images, targets

    def batch_transform(
        self, *, mixup: float, cutmix: float, num_outputs: int
    ) -> Callable[[Any, Any], tuple[Any, Any]] | None:
        """None: mixing images does not mix regression targets meaningfully; a non-zero
        ``mixup`` or ``cutmix`` is refused."""
        for setting, value in (("mixup", mixup), ("cutmix", cutmix)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{setting} must be a number, got {value!r}")
            if not math.isfinite(value) or value != 0:
                raise ValueError(
                    f"regression does not support {setting} (got {setting}={value}); set it to 0"
                )
        return None

    def loss(self, outputs: Any, targets: Any, options: LossOptions) -> Tensor:
        """Mean squared error over every target; a model returning a dict of losses gets
        their sum."""
        from torch.nn import functional

        if options.label_smoothing != 0:
            raise ValueError(
                "label_smoothing applies to classification; regression got "
                f"label_smoothing={options.label_smoothing}; set it to 0"
            )
        if isinstance(outputs, Mapping):
            losses = list(outputs.values())
            if not losses:
                raise ValueError("the model returned an empty dict of losses")
            total: Tensor = losses[0]
            for value in losses[1:]:
                total = total + value
            return total
        if outputs.shape != targets.shape:
            raise ValueError(
                f"the model returned outputs of shape {tuple(outputs.shape)} for targets of "
                f"shape {tuple(targets.shape)}; build it with num_outputs={targets.shape[-1]}"
            )
        return functional.mse_loss(outputs, targets.to(outputs.dtype))

    def metrics(self, data: TrainingData) -> MetricCollection:
        """``mae``, ``rmse`` (over every target value) and ``r2`` (averaged over targets)."""
        from torchmetrics import MetricCollection
        from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError, R2Score

        return MetricCollection(
            {
                "mae": MeanAbsoluteError(),
                "rmse": MeanSquaredError(squared=False),
                "r2": R2Score(multioutput="uniform_average"),
            }
        )
