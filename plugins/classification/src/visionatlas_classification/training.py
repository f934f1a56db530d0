"""The training pieces of image classification (a :class:`~visionatlas.TaskTraining`).

Data: the ImageFolder layout (see :mod:`visionatlas_classification.data`) or
``builtin:digits``. Items are ``(image, class_index)``; batches ``(images, labels)`` with
``labels`` a ``long`` tensor. Loss: cross-entropy with label smoothing, also on the soft
targets that mixup and cutmix produce. Metrics: top-1 and top-5 accuracy, macro F1 and the
confusion matrix (torchmetrics).
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

__all__ = ["ClassificationTraining", "check_batch_settings"]


def check_batch_settings(*, mixup: float, cutmix: float) -> None:
    """Mixup and cutmix alphas must be finite and not negative (0 turns one off)."""
    for name, value in (("mixup", mixup), ("cutmix", cutmix)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number >= 0 (0 turns it off), got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0 (0 turns it off), got {value}")


def _summed(outputs: Any) -> Tensor | None:
    """A model that computes its own losses returns a dict of them: their sum."""
    if isinstance(outputs, Mapping):
        losses = list(outputs.values())
        if not losses:
            raise ValueError("the model returned an empty dict of losses")
        total: Tensor = losses[0]
        for loss in losses[1:]:
            total = total + loss
        return total
    return None


class ClassificationTraining:
    """:class:`~visionatlas.training.protocol.TaskTraining` of the ``classification`` task."""

    task = "classification"
    monitor = "val/acc1"
    monitor_mode: Literal["min", "max"] = "max"
    builtin_datasets: Mapping[str, str] = MappingProxyType({})

    def __init__(self) -> None:
        from visionatlas_classification.digits import DIGITS_DESCRIPTION

        self.builtin_datasets = MappingProxyType({"digits": DIGITS_DESCRIPTION})

    def prepare_data(self, source: str, request: DataRequest) -> TrainingData:
        """Read an ImageFolder dataset, or write and read ``builtin:digits``."""
        from visionatlas_classification.data import read_image_folder

        builtin = builtin_name(source, self.builtin_datasets, self.task)
        if builtin is None:
            return read_image_folder(Path(source), request)
        from visionatlas_classification.digits import digits_folder

        folder = digits_folder(request.cache_dir)
        # a mirrored digit is another digit (or none): no flips for the default preset
        augment = "light" if request.augment == "default" else request.augment
        data = read_image_folder(folder, request, augment=augment)
        data.source = source
        data.description = f"{source} ({self.builtin_datasets[builtin]}) at {data.description}"
        return data

    def collate(self, items: Sequence[Any]) -> tuple[Tensor, Tensor]:
        """``(images, labels)``: ``(N, 3, H, W)`` float and ``(N,)`` long tensors."""
        import torch

        if not items:
            raise ValueError("cannot collate an empty batch")
        images = torch.stack([item[0] for item in items])
        labels = torch.tensor([int(item[1]) for item in items], dtype=torch.long)
        return images, labels

    def batch_transform(
        self, *, mixup: float, cutmix: float, num_outputs: int
    ) -> Callable[[Any, Any], tuple[Any, Any]] | None:
        """MixUp, CutMix, or a random choice of the two per batch (``None`` when both are 0).

        Targets become ``(N, num_outputs)`` class probabilities, which :meth:`loss` and
        :meth:`metrics` accept.
        """
        check_batch_settings(mixup=mixup, cutmix=cutmix)
        if mixup == 0 and cutmix == 0:
            return None
        from torchvision.transforms import v2

        chosen: list[Any] = []
        if mixup > 0:
            chosen.append(v2.MixUp(alpha=float(mixup), num_classes=num_outputs))
        if cutmix > 0:
            chosen.append(v2.CutMix(alpha=float(cutmix), num_classes=num_outputs))
        transform = chosen[0] if len(chosen) == 1 else v2.RandomChoice(chosen)

        def mix(images: Any, labels: Any) -> tuple[Any, Any]:
            mixed_images, mixed_labels = transform(images, labels)
            return mixed_images, mixed_labels

        return mix

    def loss(self, outputs: Any, targets: Any, options: LossOptions) -> Tensor:
        """Cross-entropy with ``options.label_smoothing``; ``targets`` are class indices or
        ``(N, C)`` probabilities (from mixup or cutmix)."""
        from torch.nn import functional

        smoothing = options.label_smoothing
        if isinstance(smoothing, bool) or not 0.0 <= smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {smoothing!r}")
        total = _summed(outputs)
        if total is not None:
            return total
        return functional.cross_entropy(outputs, targets, label_smoothing=float(smoothing))

    def metrics(self, data: TrainingData) -> MetricCollection:
        """``acc1``, ``acc5`` (more than five classes), macro ``f1`` and ``confmat``."""
        from visionatlas_classification.metrics import classification_metrics

        return classification_metrics(data.num_outputs)
