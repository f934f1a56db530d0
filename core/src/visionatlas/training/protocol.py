"""What a task contributes to training, as an interface any training engine can drive.

A task plugin makes its task trainable by registering a
:class:`~visionatlas.specs.TrainingSpec` whose builder returns an object with the
:class:`TaskTraining` interface. The engine (``visionatlas-train``, on PyTorch Lightning)
owns the loop, devices, precision, checkpoints and logging; the task owns what only it
knows: how its data is read and augmented, how targets are collated, its loss when the
model does not compute one, and its metrics.

A task whose method is not a per-batch loss under an optimizer (a one-class detector that
trains several networks in stages and then calibrates, a nearest-neighbour index, ...)
returns an object with the :class:`CustomFitTraining` interface instead: the engine then
reads the data through it, builds the model, and hands both to its own ``fit``, keeping
the configuration, the run folder and evaluation the same for every task.

This module imports neither torch nor pydantic: it only describes the interfaces.
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
    "CustomFitTraining",
    "DataRequest",
    "FitEvaluation",
    "FitOutcome",
    "FitRequest",
    "LossOptions",
    "PredictRequest",
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


@dataclass(frozen=True, kw_only=True)
class PredictRequest:
    """What ``visionatlas predict`` asks of a task's ``write_predictions``.

    ``out`` is an empty folder to write into; ``labels`` are the model's class names;
    ``input_size`` its training input size; detections scoring below ``score_threshold``
    are left out; ``names`` gives each image's output file stem (unique).
    """

    out: Path
    labels: tuple[str, ...] = ()
    input_size: tuple[int, int] = (224, 224)
    score_threshold: float = 0.5
    device: str = "cpu"
    batch_size: int = 4
    names: tuple[str, ...] = ()


@runtime_checkable
class TaskTraining(Protocol):
    """The training pieces of one task.

    Attributes:
        task: the task name.
        monitor: the validation metric that selects the best checkpoint, e.g. ``"val/acc1"``.
        monitor_mode: ``"max"`` or ``"min"``.
        builtin_datasets: ``builtin:NAME`` datasets the task can write without a download,
            with a one-line description each.

    Optional method ``write_predictions(model, images, request) -> dict`` (see
    :class:`PredictRequest`): writes a trained model's predictions on image files as files
    a person or a program reads (``visionatlas predict``), returning a summary.

    Optional attribute ``takes_targets`` (default ``False``): ``True`` for models that, like
    torchvision's detectors, train as ``model(inputs, targets)`` returning a dict of losses
    and predict as ``model(inputs)`` in eval mode; the engine then calls :meth:`loss` on
    training batches only and logs no validation loss.
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


@dataclass(frozen=True, kw_only=True)
class FitRequest:
    """What the engine hands a :class:`CustomFitTraining` for one fit or evaluation.

    ``config`` is the resolved training config as JSON data (``TrainConfig.as_json()`` of
    ``visionatlas-train``: ``seed``, ``input_size``, ``model``, ...); ``explicit`` names
    its top-level settings that the user gave (a config file, ``--set``, a mapping), as
    opposed to catalog or engine defaults. ``device`` is the torch device the run's
    ``accelerator`` resolves to here (``"cpu"``, ``"cuda"``, ``"mps"``). ``progress``
    asks for progress bars; ``log`` takes one line of text at a time for the person
    watching (``None``: say nothing).
    """

    config: Mapping[str, Any] = field(default_factory=dict)
    explicit: frozenset[str] = frozenset()
    device: str = "cpu"
    progress: bool = False
    log: Callable[[str], None] | None = None


@dataclass(kw_only=True)
class FitOutcome:
    """What a custom fit reports.

    ``metrics`` are its final scalars (losses, a calibrated threshold) for the run's
    summary; ``history`` has one row per logged step (``{"step": 1, "p17/teacher_loss":
    0.52, ...}``: keys ``GROUP/NAME``), written as the run's metrics CSV and plotted one
    figure per ``NAME``; ``details`` is further JSON-ready information for the summary;
    ``headline`` is a short phrase for the run's closing line (``"threshold 2.31"``).
    """

    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    headline: str = ""


@dataclass(kw_only=True)
class FitEvaluation:
    """What a custom evaluation reports: scalar ``metrics``, non-scalar ``matrices``
    (e.g. a confusion matrix as nested lists) and the ``labels`` of their rows."""

    metrics: dict[str, float]
    matrices: dict[str, list[Any]] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)


@runtime_checkable
class CustomFitTraining(Protocol):
    """The training pieces of a task that trains with its own fit, not a per-batch loss.

    An alternative to :class:`TaskTraining`, registered the same way (a
    ``TrainingSpec`` whose builder returns it). The engine resolves the run's config,
    refuses settings the fit does not honour when the user set them, reads the data with
    :meth:`prepare_data`, builds the model from the catalog with :meth:`model_config`,
    calls :meth:`fit`, saves the model with :meth:`save_model` into the run folder, and
    evaluates a run with :meth:`load_model` and :meth:`evaluate`. The fit runs in one
    process on one device; the engine does not resume it.

    Attributes:
        task: the task name.
        builtin_datasets: ``builtin:NAME`` datasets the task can write without a download.
        fit_settings: the training config's top-level settings the fit honours, each with
            a few words on how (``{"seed": "the detector's seed", ...}``). Any other
            setting given explicitly is refused, naming it.
        setting_hints: for settings it does not honour, what to use instead
            (``{"learning_rate": "set model.student_lr and model.teacher_lr"}``); shown in
            the refusal.
        registry_refusal: ``None`` if a fitted model can be stored in the model registry
            (everything it learnt is in its weights), else the sentence that says why not;
            ``--register`` is then refused before the fit starts.
    """

    task: str
    builtin_datasets: Mapping[str, str]
    fit_settings: Mapping[str, str]
    setting_hints: Mapping[str, str]
    registry_refusal: str | None

    def prepare_data(self, source: str, request: DataRequest) -> TrainingData:
        """Read ``source`` as :meth:`TaskTraining.prepare_data` does: for ``"fit"`` the
        training and validation (e.g. calibration) data, for ``"evaluate"`` the held-out
        data with whatever targets :meth:`evaluate` needs."""
        ...

    def model_config(self, request: FitRequest) -> dict[str, Any]:
        """The architecture's config for this run: the config's ``model`` section plus
        what its top-level settings imply (a seed, a device). A contradiction (the same
        option set in both places) raises ``ValueError`` naming both."""
        ...

    def fit(self, model: Any, data: TrainingData, request: FitRequest) -> FitOutcome:
        """Train ``model`` (built from the catalog with :meth:`model_config`) in place
        on ``data``; raise ``ValueError`` (or an ``ArithmeticError`` for a diverged fit)
        with a message naming what went wrong."""
        ...

    def evaluate(self, model: Any, data: TrainingData, request: FitRequest) -> FitEvaluation:
        """The task's metrics of a fitted ``model`` on held-out ``data``."""
        ...

    def save_model(self, model: Any, path: Path) -> Path:
        """Write the fitted ``model`` (weights and everything fitted) to the directory
        ``path`` in a safe format (no pickle); return what was written."""
        ...

    def load_model(self, path: Path, *, device: str | None = None) -> Any:
        """The model :meth:`save_model` wrote to ``path``, on ``device`` (default: as
        saved), ready for :meth:`evaluate`."""
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
_CUSTOM_FIT_MEMBERS = (
    "task",
    "builtin_datasets",
    "fit_settings",
    "setting_hints",
    "registry_refusal",
    "prepare_data",
    "model_config",
    "fit",
    "evaluate",
    "save_model",
    "load_model",
)


def missing_members(obj: object, *, custom_fit: bool = False) -> list[str]:
    """The :class:`TaskTraining` members ``obj`` lacks (empty if it has them all), or
    with ``custom_fit=True`` the :class:`CustomFitTraining` members."""
    names = _CUSTOM_FIT_MEMBERS if custom_fit else _MEMBERS
    return [name for name in names if not hasattr(obj, name)]
