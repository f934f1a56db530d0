"""What a task contributes to training, as an interface any training engine can drive.

A task plugin makes its task trainable by registering a
:class:`~visionatlas.specs.TrainingSpec` whose builder returns an object with the
:class:`TaskTraining` interface. The engine (``visionatlas-train``, on PyTorch Lightning)
owns the loop, devices, precision, checkpoints and logging; the task owns what only it
knows: how its data is read and augmented, how targets are collated, its loss when the
model does not compute one, and its metrics. This module imports neither torch nor
pydantic: it only describes the interface.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from torch import Tensor
    from torch.utils.data import Dataset
    from torchmetrics import MetricCollection

__all__ = [
    "DataRequest",
    "LossOptions",
    "SkippedFile",
    "TaskTraining",
    "TrainingData",
    "missing_members",
]

Purpose = Literal["fit", "evaluate"]


@dataclass(frozen=True, kw_only=True)
class DataRequest:
    """What the engine asks of a task's data reader.

    ``purpose="fit"`` wants a training split and a validation split (``val_fraction`` of
    the data, drawn with ``seed``, where the source has no validation split of its own);
    ``"evaluate"`` wants the held-out split only (a ``test/`` or ``val/`` folder, else the
    whole source). ``strict`` turns unreadable files from skipped-with-a-warning into an
    error. ``cache_dir`` is where built-in datasets (``builtin:NAME``) are written on
    first use. ``augment`` names the training augmentation preset (task-defined; ``"none"``
    turns augmentation off). ``labels`` are the names of a trained model's outputs (its
    class names or target columns): when given (as for ``purpose="evaluate"``), the reader
    maps its data onto them, in that order, and refuses names the model does not have;
    empty means "take them from the data".
    """

    purpose: Purpose = "fit"
    input_size: tuple[int, int] = (224, 224)
    val_fraction: float = 0.2
    seed: int = 0
    strict: bool = False
    cache_dir: Path | None = None
    augment: str = "default"
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class SkippedFile:
    """A file the reader left out, and why (named in warnings and the run summary)."""

    path: Path
    reason: str


@dataclass(kw_only=True)
class TrainingData:
    """A task's datasets, ready for data loaders, and what the model must know of them.

    ``train`` is ``None`` for ``purpose="evaluate"``. ``num_outputs`` is the class count
    (classification) or target count (regression) the data needs; ``labels`` names them
    (class names, target columns) and is stored with the trained model. Each dataset item
    is whatever :meth:`TaskTraining.collate` accepts.
    """

    train: Dataset[Any] | None
    val: Dataset[Any] | None
    num_outputs: int
    labels: list[str] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    source: str = ""
    description: str = ""


@dataclass(frozen=True, kw_only=True)
class LossOptions:
    """Loss settings of a run that a task may honour (or refuse with a ``ValueError``)."""

    label_smoothing: float = 0.0


@runtime_checkable
class TaskTraining(Protocol):
    """The training pieces of one task.

    Attributes:
        task: the task name.
        monitor: the validation metric that selects the best checkpoint, e.g. ``"val/acc1"``.
        monitor_mode: ``"max"`` or ``"min"``.
        builtin_datasets: ``builtin:NAME`` datasets the task can write without a download,
            with a one-line description each.
    """

    task: str
    monitor: str
    monitor_mode: Literal["min", "max"]
    builtin_datasets: Mapping[str, str]

    def prepare_data(self, source: str, request: DataRequest) -> TrainingData:
        """Read ``source`` (a path, or ``builtin:NAME``) into datasets.

        Bad input raises a ``ValueError`` (or ``FileNotFoundError``) naming the file or
        folder and what is accepted, before any training starts.
        """
        ...

    def collate(self, items: Sequence[Any]) -> tuple[Any, Any]:
        """``(inputs, targets)`` for the model from dataset items."""
        ...

    def batch_transform(
        self, *, mixup: float, cutmix: float, num_outputs: int
    ) -> Callable[[Any, Any], tuple[Any, Any]] | None:
        """A transform of whole training batches (mixup, cutmix), or ``None`` for none.

        Raises ``ValueError`` if the task cannot honour a non-zero setting.
        """
        ...

    def loss(self, outputs: Any, targets: Any, options: LossOptions) -> Tensor:
        """The training loss of a batch. ``outputs`` is what the model returned; a model
        that computes its own losses (a dict of them) gets their sum."""
        ...

    def metrics(self, data: TrainingData) -> MetricCollection:
        """A fresh ``torchmetrics.MetricCollection`` updated as ``update(outputs, targets)``.

        Scalar metrics are logged per epoch under ``val/`` and written to the metrics CSV;
        non-scalar ones (a confusion matrix) are saved by the engine at the end of a run.
        """
        ...


_MEMBERS = (
    "task",
    "monitor",
    "monitor_mode",
    "builtin_datasets",
    "prepare_data",
    "collate",
    "batch_transform",
    "loss",
    "metrics",
)


def missing_members(obj: object) -> list[str]:
    """The :class:`TaskTraining` members ``obj`` lacks (empty if it has them all)."""
    return [name for name in _MEMBERS if not hasattr(obj, name)]
