"""Anomaly detection for ``visionatlas train``: a :class:`~visionatlas.CustomFitTraining`.

Uninformed Students does not train by one loss over batches under one optimizer: it trains
a teacher per patch size, then an ensemble of students against the frozen teacher, each
stage with its own loss, sampling, optimizer and schedule, and then calibrates score
statistics and a threshold on held-out normal images (see
:meth:`~visionatlas_anomaly.model.UninformedStudents.fit`). So the task registers the
detector's own fit with the training engine instead of a per-batch loss: the engine reads
the data through :meth:`AnomalyTraining.prepare_data`, builds the detector from the
catalog, calls :meth:`AnomalyTraining.fit` and saves the fitted detector in the plugin's
own format (``model.safetensors`` and ``config.json``); ``--register`` stores it in the
model registry (its threshold and fitted image size are buffers of its state dict), and
``visionatlas evaluate`` reports image AUROC, pixel AUROC and PRO on the test split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from visionatlas.training.images import builtin_name
from visionatlas.training.protocol import (
    DataRequest,
    FitEvaluation,
    FitOutcome,
    FitRequest,
    TrainingData,
)
from visionatlas_anomaly.builtin import BUILTIN_DATASETS, synthetic_category
from visionatlas_anomaly.data import read_normal_images, read_test_images
from visionatlas_anomaly.metrics import evaluate as detection_metrics
from visionatlas_anomaly.model import UninformedStudents

__all__ = ["AnomalyTraining", "hold_out"]

TASK = "anomaly_detection"
LABELS = ["good", "anomalous"]

FIT_SETTINGS: dict[str, str] = {
    "input_size": "the size images are resized to (the detector's fitted image size)",
    "seed": "the detector's seed: initialization, sampling and the held-out split",
    "val_fraction": "normal images held out for calibration when there is no validation/good",
    "strict": "refuse unreadable images instead of skipping them",
    "cache_dir": "where builtin: categories are written",
    "accelerator": "the device of the fit (auto: CUDA when available, else the CPU)",
    "model": "the detector's options (UninformedStudentsConfig), e.g. model.student_steps",
}
"""The training config's settings the detector's fit honours."""

_ONE_DEVICE = "the fit runs in one process on one device: choose it with accelerator"
SETTING_HINTS: dict[str, str] = {
    "epochs": "the detector trains for a number of steps: set model.teacher_steps and "
    "model.student_steps",
    "learning_rate": "set model.student_lr and model.teacher_lr",
    "batch_size": "set model.batch_size (crops per student step), model.teacher_batch_size "
    "or model.inference_batch_size",
    "weight_decay": "set model.weight_decay",
    "optimizer": "the detector's stages train with Adam",
    "scheduler": "set model.lr_schedule (cosine or constant)",
    "warmup_epochs": "set model.lr_schedule (cosine or constant)",
    "devices": _ONE_DEVICE,
    "num_nodes": _ONE_DEVICE,
    "strategy": _ONE_DEVICE,
    "sync_batchnorm": _ONE_DEVICE,
    "precision": "the detector trains in float32",
    "num_workers": "the images are read into memory once",
    "augment": "the students' random crops and the triplets' shifts are the method's own "
    "sampling (model.positive_shift, model.positive_noise)",
    "check_inputs": "the detector always checks its images (finite, in [0, 1])",
    "dropout": "Uninformed Students has no head",
    "freeze_backbone": "Uninformed Students has no backbone to freeze",
    "probe_epochs": "Uninformed Students has no head to probe",
    "probe_learning_rate": "Uninformed Students has no head to probe",
    "label_smoothing": "the detector has no classification loss",
    "mixup": "the detector trains on normal images only",
    "cutmix": "the detector trains on normal images only",
    "early_stopping": "there are no epochs to stop after",
    "limit_train_batches": "set model.student_steps and model.teacher_steps",
    "limit_val_batches": "every held-out image calibrates the scores",
    "train_metrics": "the fit reports its losses per step",
    "precise_bn_batches": "the detector's networks have no batch normalization",
}
"""What to use instead of the settings the fit does not honour."""

_FROM_TOP = {
    "seed": "seed",
    "validation_fraction": "val_fraction",
}
"""Detector options set by a top-level setting (the run's seed and held-out share)."""


def hold_out(images: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """``(train, held_out)``: a seeded ``fraction`` of ``images`` (at least one, never
    all) held out for calibration, as :meth:`UninformedStudents.fit` holds out."""
    count = len(images)
    if count < 2:
        raise ValueError(
            f"fitting needs at least 2 normal images (some are held out for calibration), got "
            f"{count}; add images or a validation/good folder"
        )
    held = min(count - 1, max(1, round(count * fraction)))
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    return images[order[held:]], images[order[:held]]


def _tensors(dataset: Dataset[Any] | None, what: str) -> tuple[Tensor, ...]:
    if isinstance(dataset, TensorDataset):
        return tuple(dataset.tensors)
    if dataset is None or not hasattr(dataset, "__len__") or len(dataset) == 0:
        raise ValueError(f"no {what} images to fit on")
    items = [dataset[i] for i in range(len(dataset))]
    first = items[0] if isinstance(items[0], tuple) else (items[0],)
    columns = [
        torch.stack([item[k] if isinstance(item, tuple) else item for item in items])
        for k in range(len(first))
    ]
    return tuple(columns)


def _detector(model: Any) -> UninformedStudents:
    if not isinstance(model, UninformedStudents):
        raise TypeError(
            f"anomaly_detection fits an UninformedStudents detector, got {type(model).__name__}"
        )
    return model


class AnomalyTraining:
    """The anomaly detection task's pieces for a training engine (own fit, no batches)."""

    task = TASK
    builtin_datasets: Mapping[str, str] = BUILTIN_DATASETS
    fit_settings: Mapping[str, str] = FIT_SETTINGS
    setting_hints: Mapping[str, str] = SETTING_HINTS
    registry_refusal: str | None = None

    # -- data ------------------------------------------------------------------------------
    def _root(self, source: str, request: DataRequest) -> Path:
        name = builtin_name(source, self.builtin_datasets, TASK)
        if name is not None:
            return synthetic_category(name, request.cache_dir)
        return Path(source).expanduser()

    def prepare_data(self, source: str, request: DataRequest) -> TrainingData:
        """An MVTec AD category folder (or ``builtin:NAME``), resized to ``input_size``.

        ``fit``: ``train/good`` to train on, and ``validation/good`` to calibrate on, else
        a seeded ``val_fraction`` of ``train/good`` held out. ``evaluate``: ``test/`` with
        the masks, items ``(image, label, mask)``.
        """
        root = self._root(source, request)
        size = request.input_size
        if request.purpose == "fit":
            normal = read_normal_images(root, image_size=size, strict=request.strict)
            if normal.validation is not None:
                train, held = normal.train, normal.validation
                how = f"{len(held)} in validation/good"
            else:
                train, held = hold_out(normal.train, request.val_fraction, request.seed)
                how = f"{len(held)} held out of train/good (val_fraction {request.val_fraction})"
            return TrainingData(
                train=TensorDataset(train),
                val=TensorDataset(held),
                num_outputs=1,
                skipped=normal.skipped,
                source=source,
                description=(
                    f"{len(train)} normal images to train on, {how} to calibrate on, at "
                    f"{size[0]}x{size[1]}"
                ),
            )
        test = read_test_images(root, image_size=size, strict=request.strict)
        anomalous = int(test.labels.sum())
        return TrainingData(
            train=None,
            val=TensorDataset(test.images, test.labels, test.masks),
            num_outputs=1,
            skipped=test.skipped,
            source=source,
            description=(
                f"{len(test.labels)} test images ({anomalous} anomalous) at {size[0]}x{size[1]}"
            ),
        )

    # -- the model -------------------------------------------------------------------------
    def model_config(self, request: FitRequest) -> dict[str, Any]:
        """The detector's options: the config's ``model`` section, the run's ``seed``,
        the device from ``accelerator`` unless ``model.device`` names one, and progress
        bars as the engine asks unless ``model.progress`` is set."""
        config = request.config
        options = dict(config.get("model") or {})
        for key, top in _FROM_TOP.items():
            if key in options:
                raise ValueError(
                    f"model.{key} is the run's setting {top}: set {top} at the top level of "
                    "the training config instead"
                )
        options["seed"] = config.get("seed", 0)
        if "device" in options:
            if "accelerator" in request.explicit:
                raise ValueError(
                    f"accelerator {config.get('accelerator')!r} and model.device "
                    f"{options['device']!r} both choose the device; set one of them"
                )
        else:
            options["device"] = request.device
        options.setdefault("progress", request.progress)
        return options

    def fit(self, model: Any, data: TrainingData, request: FitRequest) -> FitOutcome:
        """Fit the detector: teachers, students, then calibration on the held-out images."""
        detector = _detector(model)
        (train,) = _tensors(data.train, "training")[:1]
        (held,) = _tensors(data.val, "held-out")[:1]
        cfg = detector.config
        if request.log is not None:
            request.log(
                f"fitting patch sizes {', '.join(map(str, cfg.patch_sizes))}: "
                f"{cfg.teacher_steps} teacher and {cfg.student_steps} student steps each "
                f"({cfg.num_students} students), on {cfg.device}"
            )
        detector.fit(train, held)
        report = detector.fit_report
        threshold = detector.threshold
        if report is None or threshold is None:  # pragma: no cover - fit sets both
            raise RuntimeError("the detector's fit returned without a report")
        history = _history(report.teacher_losses, report.student_losses)
        metrics: dict[str, float] = {"threshold": threshold}
        for stage, losses in (
            ("teacher", report.teacher_losses),
            ("student", report.student_losses),
        ):
            for scale, values in losses.items():
                if values:
                    metrics[f"{scale}/{stage}_loss"] = values[-1]
        details = {
            "teacher_source": detector.teacher_source,
            "image_size": list(detector.image_size or ()),
            "fit": report.as_dict(),
        }
        return FitOutcome(
            metrics=metrics,
            history=history,
            details=details,
            headline=f"threshold {threshold:.4f} ({detector.teacher_source} teachers)",
        )

    def evaluate(self, model: Any, data: TrainingData, request: FitRequest) -> FitEvaluation:
        """Image AUROC, pixel AUROC and PRO of the anomaly maps on the test images, and
        the image-level accuracy and confusion matrix at the calibrated threshold."""
        detector = _detector(model)
        images, labels, masks = _tensors(data.val, "test")[:3]
        prediction = detector.predict(images)
        scores = detection_metrics(
            prediction.anomaly_maps.numpy(),
            prediction.scores.numpy(),
            masks.numpy(),
            labels.numpy(),
        )
        truth = labels.bool()
        flagged = prediction.is_anomalous
        matrix = [
            [int((~truth & ~flagged).sum()), int((~truth & flagged).sum())],
            [int((truth & ~flagged).sum()), int((truth & flagged).sum())],
        ]
        accuracy = float((truth == flagged).float().mean())
        return FitEvaluation(
            metrics={**scores.as_dict(), "accuracy": accuracy},
            matrices={"confmat": matrix},
            labels=list(LABELS),
        )

    def save_model(self, model: Any, path: Path) -> Path:
        """The fitted detector as ``path/model.safetensors`` and ``path/config.json``."""
        return _detector(model).save(path)

    def load_model(self, path: Path, *, device: str | None = None) -> UninformedStudents:
        """The detector :meth:`save_model` wrote (threshold and image size included)."""
        return UninformedStudents.load(path, device=device)


def _history(
    teacher: Mapping[str, list[float]], student: Mapping[str, list[float]]
) -> list[dict[str, float]]:
    """One row per step: ``{"step": n, "p17/teacher_loss": ..., "p17/student_loss": ...}``."""
    columns = {f"{scale}/teacher_loss": values for scale, values in teacher.items()}
    columns |= {f"{scale}/student_loss": values for scale, values in student.items()}
    steps = max((len(values) for values in columns.values()), default=0)
    rows: list[dict[str, float]] = []
    for index in range(steps):
        row: dict[str, float] = {"step": index + 1}
        for name, values in columns.items():
            if index < len(values) and math.isfinite(values[index]):
                row[name] = values[index]
        rows.append(row)
    return rows
