"""A tiny trainable task for the engine's tests: ``toyclass``, architecture ``tiny``.

Its data (``builtin:blobs``) are small synthetic images whose class decides which colour
channel is bright, so a tiny network learns them in an epoch or two. Registered as a
plugin object: ``Catalog(plugins=[train_toy])`` (also usable from a subprocess).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from visionatlas import hookimpl
from visionatlas.config import ModelConfig
from visionatlas.plugins.registrar import Registrar
from visionatlas.specs import ArchitectureSpec, Hyperparameters, TaskSpec, TrainingSpec
from visionatlas.training.protocol import DataRequest, LossOptions, TrainingData

TASK = "toyclass"
CLASSES = ("red", "green", "blue")
SIZE = 16


class TinyNet(nn.Module):
    """A conv backbone and a linear head, with the freezing methods of catalog models."""

    def __init__(self, num_classes: int, dropout: float = 0.0, *, norm: str = "batch") -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.BatchNorm2d(8) if norm == "batch" else nn.GroupNorm(2, 8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(16, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))

    def freeze_backbone(self) -> None:
        self.backbone.requires_grad_(False)

    def unfreeze_backbone(self) -> None:
        self.backbone.requires_grad_(True)


def build_tiny(config: ModelConfig, num_classes: int, norm: str = "batch") -> TinyNet:
    model = TinyNet(num_classes, dropout=config.dropout or 0.0, norm=norm)
    if config.freeze_backbone:
        model.freeze_backbone()
    return model


class Blobs(Dataset[tuple[Tensor, int]]):
    """``count`` images of ``size`` pixels; class ``k`` has channel ``k`` bright."""

    def __init__(self, count: int, size: int, seed: int, classes: int = 3) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(count) % classes
        self.images = torch.rand(count, 3, size, size, generator=generator) * 0.5
        for i, label in enumerate(self.labels.tolist()):
            self.images[i, label] += 0.5

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        _count_and_maybe_die()
        return self.images[index], int(self.labels[index])


_FETCHED = [0]


def _count_and_maybe_die() -> None:
    """With ``TOY_KILL_AFTER_ITEMS=N``, the process sends itself ``TOY_KILL_SIGNAL``
    (default SIGKILL) when it reads item N+1 (once)."""
    limit = os.environ.get("TOY_KILL_AFTER_ITEMS")
    _FETCHED[0] += 1
    if limit and _FETCHED[0] == int(limit) + 1:
        number = int(os.environ.get("TOY_KILL_SIGNAL", signal.SIGKILL))
        os.kill(os.getpid(), number)


class ToyTraining:
    task = TASK
    monitor = "val/acc1"
    monitor_mode: Literal["min", "max"] = "max"
    builtin_datasets: Mapping[str, str] = {"blobs": "synthetic colour blobs, 3 classes"}

    def prepare_data(self, source: str, request: DataRequest) -> TrainingData:
        if not source.startswith("builtin:blobs"):
            raise FileNotFoundError(f"toy data {source!r} does not exist; use builtin:blobs")
        _, _, count_text = source.partition("#")
        count = int(count_text or 48)
        size = request.input_size[0]
        if request.purpose == "evaluate":
            return TrainingData(
                train=None, val=Blobs(count // 2, size, seed=99), num_outputs=3,
                labels=list(CLASSES), source=source,
            )  # fmt: skip
        return TrainingData(
            train=Blobs(count, size, seed=request.seed),
            val=Blobs(max(6, count // 4), size, seed=request.seed + 1000),
            num_outputs=3,
            labels=list(CLASSES),
            source=source,
        )

    def collate(self, items: Sequence[Any]) -> tuple[Tensor, Tensor]:
        images = torch.stack([image for image, _ in items])
        return images, torch.tensor([label for _, label in items], dtype=torch.long)

    def batch_transform(
        self, *, mixup: float, cutmix: float, num_outputs: int
    ) -> Callable[[Any, Any], tuple[Any, Any]] | None:
        if not mixup and not cutmix:
            return None
        from torchvision.transforms import v2

        return v2.MixUp(alpha=mixup or 1.0, num_classes=num_outputs)  # type: ignore[no-any-return]

    def loss(self, outputs: Any, targets: Any, options: LossOptions) -> Tensor:
        return F.cross_entropy(outputs, targets, label_smoothing=options.label_smoothing)

    def metrics(self, data: TrainingData) -> Any:
        from torchmetrics import MetricCollection
        from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

        return MetricCollection(
            {
                "acc1": MulticlassAccuracy(num_classes=data.num_outputs, average="micro"),
                "confmat": MulticlassConfusionMatrix(num_classes=data.num_outputs),
            }
        )


def make_training() -> ToyTraining:
    return ToyTraining()


@hookimpl
def visionatlas_register_tasks(registrar: Registrar) -> None:
    registrar.add_task(TaskSpec(name=TASK, display_name="Toy classes", input_kind="image_batch"))


@hookimpl
def visionatlas_register_architectures(registrar: Registrar) -> None:
    registrar.add_architecture(
        ArchitectureSpec(
            task=TASK,
            name="tiny",
            builder=build_tiny,
            default_num_classes=3,
            hyperparameters=Hyperparameters(
                learning_rate=0.01, batch_size=8, input_size=(SIZE, SIZE), epochs=2
            ),
        )
    )
    registrar.add_architecture(
        ArchitectureSpec(
            task=TASK,
            name="tiny_gn",
            builder=build_tiny_group_norm,
            default_num_classes=3,
            hyperparameters=Hyperparameters(
                learning_rate=0.01, batch_size=8, input_size=(SIZE, SIZE), epochs=2
            ),
        )
    )


def build_tiny_group_norm(config: ModelConfig, num_classes: int) -> TinyNet:
    """``tiny`` with group normalization: per-sample statistics, the same on any batch split."""
    return build_tiny(config, num_classes, norm="group")


@hookimpl
def visionatlas_register_training(registrar: Registrar) -> None:
    registrar.add_training(TrainingSpec(task=TASK, builder=make_training))
