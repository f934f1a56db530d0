"""The Uninformed Students detector: teachers, student ensembles, scoring and calibration."""

from __future__ import annotations

import contextlib
import math
import numbers
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from visionatlas_anomaly.calibration import ScaleStatistics
from visionatlas_anomaly.config import UninformedStudentsConfig
from visionatlas_anomaly.devices import resolve_device
from visionatlas_anomaly.errors import FitDivergedError, NonFiniteError
from visionatlas_anomaly.inputs import check_image_size, check_images
from visionatlas_anomaly.networks import PatchNetwork
from visionatlas_anomaly.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from visionatlas_anomaly.training import (
    descriptor_statistics,
    load_distillation_network,
    train_students,
    train_teacher,
)

__all__ = [
    "AnomalyPrediction",
    "FitReport",
    "NotFittedError",
    "UninformedStudents",
    "build_uninformed_students",
]

STATISTICS_IMAGES = 16
"""Training images (at most) whose teacher descriptors give the normalization statistics."""


class NotFittedError(RuntimeError):
    """The detector was used for something that needs :meth:`UninformedStudents.fit` first."""


@dataclass
class AnomalyPrediction:
    """What :meth:`UninformedStudents.predict` returns."""

    anomaly_maps: Tensor
    """``(N, H, W)`` anomaly scores per pixel, at input resolution (CPU, float32)."""
    scores: Tensor
    """``(N,)`` image scores: the maximum of each map."""
    threshold: float
    """Image-score threshold calibrated on held-out normal images (always finite)."""

    @property
    def is_anomalous(self) -> Tensor:
        """``(N,)`` booleans: ``scores > threshold``."""
        return self.scores > self.threshold


@dataclass
class FitReport:
    """What :meth:`UninformedStudents.fit` did."""

    teacher_source: str
    train_images: int
    validation_images: int
    teacher_losses: dict[str, list[float]] = field(default_factory=dict)
    student_losses: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "teacher_source": self.teacher_source,
            "train_images": self.train_images,
            "validation_images": self.validation_images,
            "final_teacher_loss": {k: v[-1] for k, v in self.teacher_losses.items() if v},
            "final_student_loss": {k: v[-1] for k, v in self.student_losses.items() if v},
            "seconds": round(self.seconds, 2),
        }


def _key(patch_size: int) -> str:
    return f"p{patch_size}"


class UninformedStudents(nn.Module):
    """Student-teacher anomaly detection (Bergmann et al., CVPR 2020).

    ``forward(images)`` returns ``(N, H, W)`` anomaly maps; :meth:`fit` trains on normal
    images and :meth:`predict` adds image scores and the calibrated threshold. A fitted
    detector scores images of the size it was fitted at (:attr:`image_size`) and refuses
    others with :class:`~visionatlas_anomaly.inputs.ImageSizeError` unless ``any_size=True``.
    """

    def __init__(self, config: UninformedStudentsConfig | None = None) -> None:
        super().__init__()
        self.config = config or UninformedStudentsConfig()
        cfg = self.config
        with _seeded(cfg.seed):
            self.teachers = nn.ModuleDict(
                {_key(p): PatchNetwork(p, cfg.descriptor_dim, cfg.width) for p in cfg.patch_sizes}
            )
            self.students = nn.ModuleDict(
                {
                    _key(p): nn.ModuleList(
                        PatchNetwork(p, cfg.descriptor_dim, cfg.width)
                        for _ in range(cfg.num_students)
                    )
                    for p in cfg.patch_sizes
                }
            )
        self.statistics = nn.ModuleDict(
            {_key(p): ScaleStatistics(p, cfg.descriptor_dim) for p in cfg.patch_sizes}
        )
        self._mean: Tensor
        self._std: Tensor
        self.register_buffer(
            "_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer("_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        # The fit's outcome lives in the state dict, so that the model registry and
        # checkpoints, which store weights only, keep a fitted detector fitted.
        self.fit_done: Tensor
        self.fit_threshold: Tensor
        self.fit_image_size: Tensor
        self.register_buffer("fit_done", torch.zeros((), dtype=torch.bool))
        self.register_buffer("fit_threshold", torch.zeros((), dtype=torch.float64))
        self.register_buffer("fit_image_size", torch.zeros(2, dtype=torch.int64))
        self._normalization: tuple[tuple[float, ...], tuple[float, ...]] = (
            IMAGENET_MEAN,
            IMAGENET_STD,
        )
        self.register_load_state_dict_post_hook(_check_loaded_fit)  # type: ignore[no-untyped-call]
        self.teacher_source: str | None = None
        self.fit_report: FitReport | None = None
        self.requires_grad_(False)

    # -- properties -------------------------------------------------------------------------
    @property
    def patch_sizes(self) -> tuple[int, ...]:
        return self.config.patch_sizes

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` (or loaded weights) calibrated it; ``False`` on the meta device."""
        return not self.fit_done.is_meta and bool(self.fit_done)

    @property
    def threshold(self) -> float | None:
        """The calibrated image-score threshold (``None`` before :meth:`fit`); always finite."""
        return float(self.fit_threshold) if self.fitted else None

    @threshold.setter
    def threshold(self, value: float | None) -> None:
        given: object = value  # also checked at run time (files, user code)
        if given is None:
            self.fit_done.fill_(False)
            self.fit_threshold.zero_()
            return
        if isinstance(given, bool) or not isinstance(given, numbers.Real):
            raise TypeError(f"threshold must be a finite number or None, got {given!r}")
        if not math.isfinite(given):
            raise NonFiniteError(
                f"threshold must be a finite number, got {given}; a detector with a NaN or "
                "infinite threshold would call every image normal (or anomalous)"
            )
        self.fit_threshold.fill_(float(given))
        self.fit_done.fill_(True)

    @property
    def preprocessing(self) -> Preprocessing | None:
        """The fitted image size and normalization (``None`` before :meth:`fit`, or when
        loaded from a file saved before version 3 of the format)."""
        size = self.image_size
        if size is None:
            return None
        mean, std = self._normalization
        return Preprocessing.model_validate({"image_size": size, "mean": mean, "std": std})

    @preprocessing.setter
    def preprocessing(self, value: Preprocessing | None) -> None:
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if value is None else (value.mean, value.std)
        self._mean.copy_(torch.tensor(mean).view(1, 3, 1, 1))
        self._std.copy_(torch.tensor(std).view(1, 3, 1, 1))
        self._normalization = (tuple(mean), tuple(std))
        self.fit_image_size.copy_(torch.tensor((0, 0) if value is None else value.image_size))

    @property
    def image_size(self) -> tuple[int, int] | None:
        """``(H, W)`` of the images the detector was fitted on, or ``None`` if unknown."""
        if self.fit_image_size.is_meta:  # shapes traced without data
            return None
        height, width = (int(side) for side in self.fit_image_size)
        return (height, width) if height > 0 and width > 0 else None

    @property
    def device(self) -> torch.device:
        return self._mean.device

    def _normalize(self, images: Tensor) -> Tensor:
        return (images - self._mean) / self._std

    def _teacher(self, patch_size: int) -> PatchNetwork:
        return cast(PatchNetwork, self.teachers[_key(patch_size)])

    def _students(self, patch_size: int) -> list[PatchNetwork]:
        ensemble = cast(nn.ModuleList, self.students[_key(patch_size)])
        return [cast(PatchNetwork, student) for student in ensemble]

    def _stats(self, patch_size: int) -> ScaleStatistics:
        return cast(ScaleStatistics, self.statistics[_key(patch_size)])

    # -- scoring ----------------------------------------------------------------------------
    def _raw_scale(self, images: Tensor, patch_size: int) -> tuple[Tensor, Tensor]:
        """Regression error and predictive variance per pixel, ``(N, H, W)`` each."""
        stats = self._stats(patch_size)
        x = self._normalize(images)
        mean = stats.descriptor_mean[None, :, None, None]
        std = stats.descriptor_std[None, :, None, None]
        target = (self._teacher(patch_size).dense(x) - mean) / std
        predictions = torch.stack([s.dense(x) for s in self._students(patch_size)])
        average = predictions.mean(dim=0)
        error = (average - target).pow(2).sum(dim=1)
        variance = predictions.pow(2).sum(dim=2).mean(dim=0) - average.pow(2).sum(dim=1)
        return error, variance.clamp_min(0.0)

    def _scale_map(self, images: Tensor, patch_size: int) -> Tensor:
        stats = self._stats(patch_size)
        error, variance = self._raw_scale(images, patch_size)
        score = stats.standardize(error, stats.error_moments)
        if self.config.num_students > 1:
            score = score + stats.standardize(variance, stats.variance_moments)
        return score

    def _maps(self, images: Tensor) -> Tensor:
        maps = torch.stack([self._scale_map(images, p) for p in self.patch_sizes]).mean(dim=0)
        sigma = self.config.score_smoothing
        if sigma > 0:
            from torchvision.transforms.v2.functional import gaussian_blur

            kernel = 2 * math.ceil(3 * sigma) + 1
            maps = gaussian_blur(maps[:, None], [kernel, kernel], [sigma, sigma])[:, 0]
        return maps

    def _check_input(self, images: Tensor, any_size: bool) -> None:
        check_images(images)
        if not any_size and self.image_size is not None:
            check_image_size(images, self.image_size)

    def forward(self, images: Tensor, *, any_size: bool = False) -> Tensor:
        """``(N, 3, H, W)`` images in [0, 1] -> ``(N, H, W)`` anomaly maps.

        Once fitted, ``H, W`` must be :attr:`image_size` unless ``any_size`` is set.
        """
        self._check_input(images, any_size)
        return self._maps(images.to(self._mean.dtype))

    @torch.no_grad()
    def anomaly_maps(self, images: Tensor, *, any_size: bool = False) -> Tensor:
        """Anomaly maps computed in chunks of ``inference_batch_size`` (returned on CPU)."""
        self._check_input(images, any_size)
        was_training = self.training
        self.eval()
        maps = [
            self._maps(chunk.to(self.device, self._mean.dtype)).cpu()
            for chunk in torch.split(images, self.config.inference_batch_size)
        ]
        self.train(was_training)
        return torch.cat(maps)

    def predict(self, images: Tensor, *, any_size: bool = False) -> AnomalyPrediction:
        """Anomaly maps, image scores (map maxima) and the calibrated threshold.

        ``images`` must have the fitted :attr:`image_size` unless ``any_size`` is set: scores
        are calibrated at that size (see :meth:`resize` and :meth:`read_images`). Raises
        :class:`~visionatlas_anomaly.errors.NonFiniteError` rather than return a NaN score.
        """
        threshold = self.threshold
        if threshold is None:
            raise NotFittedError(
                "this UninformedStudents detector is not fitted; call fit(normal_images) or "
                "load a fitted one with UninformedStudents.load(path)"
            )
        maps = self.anomaly_maps(images, any_size=any_size)
        scores = maps.flatten(1).amax(dim=1)
        bad = (~torch.isfinite(scores)).nonzero().flatten().tolist()
        if bad:
            raise NonFiniteError(
                f"the anomaly maps of images {bad} (0-based) hold NaN or infinite values though "
                "the images are finite: the detector's weights or statistics are damaged; fit "
                "it again"
            )
        return AnomalyPrediction(anomaly_maps=maps, scores=scores, threshold=threshold)

    def resize(self, images: Tensor) -> Tensor:
        """``images`` resized to the fitted :attr:`image_size` (bilinear, antialiased like
        PIL's when shrinking); unchanged if they have it or the size is unknown."""
        check_images(images)
        size = self.image_size
        if size is None or tuple(images.shape[-2:]) == size:
            return images
        resized = torch.nn.functional.interpolate(
            images, size=size, mode="bilinear", align_corners=False, antialias=True
        )
        return resized.clamp(0.0, 1.0)

    def read_images(self, paths: Sequence[str | Path]) -> Tensor:
        """Read image files as the detector was fitted: RGB in [0, 1], resized to
        :attr:`image_size` (at their own size, which must agree, if it is unknown)."""
        from visionatlas_anomaly.data import load_images

        return load_images([Path(p) for p in paths], self.image_size)

    # -- fitting ----------------------------------------------------------------------------
    def fit(
        self, normal_images: Tensor, validation_images: Tensor | None = None
    ) -> UninformedStudents:
        """Train teachers (if needed) and students on anomaly-free images, then calibrate.

        Without ``validation_images``, a ``validation_fraction`` of ``normal_images`` is
        held out (at least one image) for the score statistics and the threshold.
        """
        cfg = self.config
        check_images(normal_images, "normal_images")
        if validation_images is None:
            train, validation = self._split(normal_images)
        else:
            check_images(validation_images, "validation_images")
            height, width = normal_images.shape[-2:]
            check_image_size(validation_images, (height, width), "validation_images")
            train, validation = normal_images, validation_images
        device = resolve_device(cfg.device)
        start = time.perf_counter()
        self.threshold = None  # a fit that fails leaves the detector unfitted
        self.preprocessing = None
        self.to(device)
        train = train.to(device, torch.float32)
        validation = validation.to(device, torch.float32)
        generator = torch.Generator().manual_seed(cfg.seed)
        with _threads(cfg.num_threads), _seeded(cfg.seed), torch.enable_grad():
            resnet = load_distillation_network(cfg)
            if resnet is not None:
                resnet.to(device)
            source = "self_supervised" if resnet is None else "resnet18_distillation"
            if cfg.teacher_steps == 0:
                source = "untrained"
            report = FitReport(source, len(train), len(validation))
            for p in self.patch_sizes:
                teacher = self._teacher(p)
                teacher.requires_grad_(True)
                report.teacher_losses[_key(p)] = train_teacher(
                    teacher, train, cfg, self._normalize, generator, resnet, label=_key(p)
                )
                teacher.requires_grad_(False)
                stats = self._stats(p)
                subset = train[torch.randperm(len(train), generator=generator)[:STATISTICS_IMAGES]]
                mean, std = descriptor_statistics(
                    teacher, subset, self._normalize, cfg.inference_batch_size
                )
                if not bool(torch.isfinite(torch.cat([mean, std])).all()):
                    raise FitDivergedError(
                        f"teacher training for patch size {p}",
                        "the teacher's descriptors of the training images are NaN or infinite; "
                        "lower teacher_lr",
                    )
                stats.descriptor_mean.copy_(mean)
                stats.descriptor_std.copy_(std)
                students = self._students(p)
                for student in students:
                    student.requires_grad_(True)
                report.student_losses[_key(p)] = train_students(
                    students, teacher, train, mean, std, cfg, self._normalize, generator,
                    label=_key(p),
                )  # fmt: skip
                for student in students:
                    student.requires_grad_(False)
        self.eval()
        self._calibrate(validation)
        height, width = train.shape[-2:]
        self.preprocessing = Preprocessing(image_size=(height, width))
        self.teacher_source = source
        report.seconds = time.perf_counter() - start
        self.fit_report = report
        return self

    def _split(self, images: Tensor) -> tuple[Tensor, Tensor]:
        n = len(images)
        if n < 2:
            raise ValueError(
                f"fit needs at least 2 normal images (some are held out for calibration), got {n}"
            )
        held_out = min(n - 1, max(1, round(n * self.config.validation_fraction)))
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.config.seed))
        return images[order[held_out:]], images[order[:held_out]]

    @torch.no_grad()
    def _calibrate(self, validation: Tensor) -> None:
        """Score statistics per scale and border bin, and the image threshold, from held-out
        normal images."""
        for p in self.patch_sizes:
            stats = self._stats(p)
            error_sums = stats.accumulator(validation.device)
            variance_sums = stats.accumulator(validation.device)
            for chunk in torch.split(validation, self.config.inference_batch_size):
                error, variance = self._raw_scale(chunk, p)
                stats.add(error_sums, error)
                stats.add(variance_sums, variance)
            error_moments, variance_moments = (
                stats.moments(error_sums),
                stats.moments(variance_sums),
            )
            if not bool(torch.isfinite(torch.cat([error_moments, variance_moments])).all()):
                raise FitDivergedError(
                    "calibration",
                    f"the score statistics of patch size {p} on the held-out images are NaN or "
                    "infinite (the trained networks give non-finite outputs); lower teacher_lr "
                    "or student_lr",
                )
            shape = stats.error_moments.shape
            stats.error_moments.copy_(error_moments.view(shape))
            stats.variance_moments.copy_(variance_moments.view(shape))
        scores = self.anomaly_maps(validation).flatten(1).amax(dim=1)
        threshold = float(torch.quantile(scores.double(), self.config.threshold_quantile))
        if not math.isfinite(threshold):
            raise FitDivergedError(
                "calibration",
                f"the threshold from the held-out image scores is {threshold}; lower teacher_lr "
                "or student_lr",
            )
        self.threshold = threshold

    # -- persistence ------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        """JSON-ready description of the detector (config, preprocessing, threshold, training
        summary)."""
        preprocessing = self.preprocessing
        return {
            "format": FORMAT,
            "architecture": "uninformed_students_resnet18",
            "config": self.config.model_dump(mode="json"),
            "preprocessing": None
            if preprocessing is None
            else preprocessing.model_dump(mode="json"),
            "threshold": self.threshold,
            "teacher_source": self.teacher_source,
            "fit": None if self.fit_report is None else self.fit_report.as_dict(),
        }

    def save(self, path: str | Path) -> Path:
        """Save to a directory (``model.safetensors`` + ``config.json``) or to one
        ``.safetensors`` file (metadata in its header). Returns the path written."""
        from visionatlas_anomaly.persistence import save_detector

        return save_detector(self, Path(path))

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None) -> UninformedStudents:
        """Load a detector written by :meth:`save`."""
        from visionatlas_anomaly.persistence import load_detector

        return load_detector(Path(path), device=device)


FORMAT = "visionatlas-anomaly/uninformed-students/4"
"""Format 4 keeps the threshold and fitted image size in the tensors too (``fit_*``)."""
LEGACY_FORMATS = (
    "visionatlas-anomaly/uninformed-students/3",
    "visionatlas-anomaly/uninformed-students/2",
)
"""Formats still read: their fit state comes from the metadata; format 2 has no
preprocessing (images are scored at their own size)."""
FIT_STATE_KEYS = ("fit_done", "fit_threshold", "fit_image_size")
"""The state-dict entries that hold the fit's outcome (absent from legacy files)."""


def _check_loaded_fit(module: nn.Module, incompatible: Any) -> None:
    """Refuse a loaded state whose fit is inconsistent (a NaN threshold, a negative size)."""
    del incompatible
    done = getattr(module, "fit_done", None)
    threshold = getattr(module, "fit_threshold", None)
    size = getattr(module, "fit_image_size", None)
    if done is None or threshold is None or size is None:
        return
    if bool(done) and not bool(torch.isfinite(threshold)):
        raise NonFiniteError(
            f"the loaded detector's threshold is {float(threshold)}; a fitted detector's "
            "threshold must be a finite number"
        )
    if bool((size < 0).any()) or (bool((size == 0).any()) and bool((size > 0).any())):
        raise ValueError(
            f"the loaded detector's fitted image size is {size.tolist()}; expected two "
            "positive sides, or (0, 0) when unknown"
        )


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def _threads(count: int | None) -> Iterator[None]:
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def build_uninformed_students(
    config: UninformedStudentsConfig, num_classes: int
) -> UninformedStudents:
    """Catalog builder (``num_classes`` does not apply: anomaly detection is one-class)."""
    del num_classes
    return UninformedStudents(config)


def stack_images(images: Sequence[Tensor]) -> Tensor:
    """Stack ``(3, H, W)`` images of one size into a batch, with a clear error otherwise."""
    sizes = {tuple(image.shape) for image in images}
    if len(sizes) != 1:
        raise ValueError(f"images must all have the same shape to be batched, got {sorted(sizes)}")
    return torch.stack(list(images))
