"""Training loops: teachers (distillation or self-supervised) and student ensembles."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm  # type: ignore[import-untyped]

from visionatlas.errors import PretrainedWeightsError
from visionatlas_anomaly.config import UninformedStudentsConfig
from visionatlas_anomaly.errors import FitDivergedError
from visionatlas_anomaly.losses import (
    compactness_loss,
    distillation_loss,
    student_regression_loss,
    triplet_loss,
)
from visionatlas_anomaly.networks import PatchNetwork, pad_for_patches

__all__ = [
    "CropSampler",
    "TeacherFallbackWarning",
    "descriptor_statistics",
    "load_distillation_network",
    "train_students",
    "train_teacher",
]

Normalize = Callable[[Tensor], Tensor]
EDGE_PROBABILITY = 0.2
TRIPLETS_PER_STEP = 512
"""Descriptor positions drawn from the crops of one self-supervised teacher step."""


class TeacherFallbackWarning(UserWarning):
    """The ImageNet ResNet-18 is unavailable; teachers are trained self-supervised."""


@dataclass
class CropSampler:
    """Random crops of padded images whose dense output is ``crop x crop`` descriptors."""

    padded: Tensor
    """``(N, 3, H + p - 1, W + p - 1)`` images in [0, 1], padded for patch size ``p``."""
    patch_size: int
    crop: int
    generator: torch.Generator

    @classmethod
    def for_images(
        cls, images: Tensor, patch_size: int, crop: int, generator: torch.Generator
    ) -> CropSampler:
        height, width = images.shape[-2:]
        crop = max(1, min(crop, height, width))
        return cls(pad_for_patches(images, patch_size), patch_size, crop, generator)

    @property
    def max_origin(self) -> tuple[int, int]:
        side = self.crop + self.patch_size - 1
        return self.padded.shape[-2] - side, self.padded.shape[-1] - side

    def origins(self, count: int) -> tuple[Tensor, Tensor, Tensor]:
        """Image indices and top-left corners of ``count`` random crops.

        Along each axis a crop touches the first or the last image row/column with
        probability ``EDGE_PROBABILITY`` each, so that the descriptors of border pixels
        (computed from reflected padding) are learned as well as interior ones.
        """
        max_y, max_x = self.max_origin
        index = torch.randint(len(self.padded), (count,), generator=self.generator)
        return index, self._axis(count, max_y), self._axis(count, max_x)

    def _axis(self, count: int, maximum: int) -> Tensor:
        uniform = torch.randint(maximum + 1, (count,), generator=self.generator)
        draw = torch.rand(count, generator=self.generator)
        low = torch.zeros_like(uniform)
        edge = torch.where(draw < EDGE_PROBABILITY, low, torch.full_like(uniform, maximum))
        return torch.where(draw < 2 * EDGE_PROBABILITY, edge, uniform)

    def take(self, index: Tensor, ys: Tensor, xs: Tensor, side: int | None = None) -> Tensor:
        side = self.crop + self.patch_size - 1 if side is None else side
        crops = [
            self.padded[i, :, y : y + side, x : x + side]
            for i, y, x in zip(index.tolist(), ys.tolist(), xs.tolist(), strict=True)
        ]
        return torch.stack(crops)

    def sample(self, count: int) -> Tensor:
        return self.take(*self.origins(count))

    def shifted(self, index: Tensor, ys: Tensor, xs: Tensor, shift: int) -> Tensor:
        """The same crops translated by up to ``shift`` pixels (clamped to the image)."""
        max_y, max_x = self.max_origin
        dy = torch.randint(-shift, shift + 1, ys.shape, generator=self.generator)
        dx = torch.randint(-shift, shift + 1, xs.shape, generator=self.generator)
        return self.take(index, (ys + dy).clamp(0, max_y), (xs + dx).clamp(0, max_x))


def _schedule(
    optimizer: torch.optim.Optimizer, steps: int, config: UninformedStudentsConfig
) -> torch.optim.lr_scheduler.LRScheduler:
    """Cosine decay of the learning rate to zero over ``steps``, or a constant rate."""
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps))
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def _bar(total: int, description: str, enabled: bool) -> Any:
    return tqdm(total=total, desc=description, disable=not enabled, leave=False, unit="step")


def _noisy(crops: Tensor, std: float, generator: torch.Generator) -> Tensor:
    if std <= 0:
        return crops
    noise = torch.randn(crops.shape, generator=generator).to(crops.device) * std
    return (crops + noise).clamp(0.0, 1.0)


def _check_loss(value: float, stage: str, step: int, steps: int, remedy: str) -> None:
    if not math.isfinite(value):
        raise FitDivergedError(
            stage, f"the loss became {value} at step {step + 1} of {steps}; {remedy}"
        )


def _check_weights(parameters: Iterable[Tensor], stage: str, lr_option: str) -> None:
    if not all(bool(torch.isfinite(p).all()) for p in parameters):
        raise FitDivergedError(
            stage, f"the weights became NaN or infinite after the last step; lower {lr_option}"
        )


def load_distillation_network(config: UninformedStudentsConfig) -> nn.Module | None:
    """The pretrained ResNet-18 to distil, or ``None`` (with a warning) when unavailable.

    With ``teacher_distillation='required'`` (or ``pretrained``/``weights_path``) a missing
    file raises :class:`~visionatlas.errors.PretrainedWeightsError`.
    """
    mode = config.distillation_mode
    if mode == "off":
        return None
    from visionatlas.catalog import current_catalog

    try:
        network = current_catalog().create_backbone(config.resnet_config())
    except PretrainedWeightsError as err:
        if mode == "required":
            raise
        warnings.warn(
            "ImageNet ResNet-18 weights are unavailable, so the teachers are trained "
            "self-supervised (triplet and compactness losses on patches of the training "
            f"images) instead of by distillation ({err})",
            TeacherFallbackWarning,
            stacklevel=3,
        )
        return None
    return network.eval().requires_grad_(False)


def train_teacher(
    teacher: PatchNetwork,
    images: Tensor,
    config: UninformedStudentsConfig,
    normalize: Normalize,
    generator: torch.Generator,
    resnet: nn.Module | None,
    *,
    label: str,
) -> list[float]:
    """Train ``teacher`` in place; return its loss per step.

    With ``resnet`` the loss is ``w_k L_k + w_m L_m + w_c L_c`` over patches (the paper);
    without it, ``w_m L_m + w_c L_c`` over dense descriptors of image crops. A NaN or
    infinite loss or weight raises :class:`~visionatlas_anomaly.errors.FitDivergedError`.
    """
    steps = config.teacher_steps
    if steps == 0:
        return []
    device = images.device
    p = teacher.patch_size
    decoder: nn.Module | None = None
    parameters = list(teacher.parameters())
    if resnet is not None:
        decoder = nn.Linear(config.descriptor_dim, _output_width(resnet)).to(device)
        parameters += list(decoder.parameters())
        sampler = CropSampler.for_images(images, p, 1, generator)
    else:
        crop = config.teacher_crop(min(images.shape[-2:]))
        sampler = CropSampler.for_images(images, p, crop, generator)
    optimizer = torch.optim.Adam(parameters, lr=config.teacher_lr, weight_decay=config.weight_decay)
    scheduler = _schedule(optimizer, steps, config)
    teacher.train()
    kind = "self-supervised teacher training" if resnet is None else "teacher distillation"
    stage = f"{kind} for patch size {p}"
    losses: list[float] = []
    with _bar(steps, f"teacher {label}", config.progress) as bar:
        for step in range(steps):
            if resnet is not None and decoder is not None:
                loss = _distillation_step(teacher, decoder, resnet, sampler, config, normalize)
            else:
                loss = _self_supervised_step(teacher, sampler, config, normalize)
            losses.append(float(loss.detach()))
            _check_loss(losses[-1], stage, step, steps, "lower teacher_lr or the loss weights")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            scheduler.step()
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            bar.update()
    _check_weights(teacher.parameters(), stage, "teacher_lr")
    teacher.eval()
    return losses


def _output_width(resnet: nn.Module) -> int:
    return int(getattr(resnet, "pre_logits_dim", 512))


def _triplet_terms(anchor: Tensor, positive: Tensor, config: UninformedStudentsConfig) -> Tensor:
    shift = int(torch.randint(1, len(anchor), ())) if len(anchor) > 1 else 0
    negative = anchor.roll(shift, dims=0)
    loss = anchor.new_zeros(())
    if config.triplet_weight > 0:
        loss = loss + config.triplet_weight * triplet_loss(
            anchor, positive, negative, config.triplet_margin
        )
    if config.compactness_weight > 0:
        loss = loss + config.compactness_weight * compactness_loss(anchor)
    return loss


def _self_supervised_step(
    teacher: PatchNetwork,
    sampler: CropSampler,
    config: UninformedStudentsConfig,
    normalize: Normalize,
) -> Tensor:
    index, ys, xs = sampler.origins(config.teacher_batch_size)
    anchors = sampler.take(index, ys, xs)
    positives = _noisy(
        sampler.shifted(index, ys, xs, config.positive_shift),
        config.positive_noise,
        sampler.generator,
    )
    a = teacher.dense_valid(normalize(anchors)).permute(0, 2, 3, 1).flatten(0, 2)
    p = teacher.dense_valid(normalize(positives)).permute(0, 2, 3, 1).flatten(0, 2)
    take = torch.randperm(len(a), generator=sampler.generator)[:TRIPLETS_PER_STEP].to(a.device)
    return _triplet_terms(a[take], p[take], config)


def _distillation_step(
    teacher: PatchNetwork,
    decoder: nn.Module,
    resnet: nn.Module,
    sampler: CropSampler,
    config: UninformedStudentsConfig,
    normalize: Normalize,
) -> Tensor:
    p = teacher.patch_size
    index, ys, xs = sampler.origins(config.teacher_batch_size * 8)
    patches = sampler.take(index, ys, xs, side=p)
    size = config.distillation_input_size
    with torch.no_grad():
        resized = F.interpolate(normalize(patches), size=(size, size), mode="bilinear")
        target = resnet.forward_pre_logits(resized)  # type: ignore[operator]
    anchor = teacher(normalize(patches))
    loss = config.distillation_weight * distillation_loss(decoder(anchor), target)
    if config.triplet_weight > 0 or config.compactness_weight > 0:
        positives = _noisy(
            sampler.shifted(index, ys, xs, config.positive_shift)[..., :p, :p],
            config.positive_noise,
            sampler.generator,
        )
        loss = loss + _triplet_terms(anchor, teacher(normalize(positives)), config)
    return loss


@torch.no_grad()
def descriptor_statistics(
    network: PatchNetwork, images: Tensor, normalize: Normalize, batch_size: int
) -> tuple[Tensor, Tensor]:
    """Per-dimension mean and standard deviation of ``network``'s dense descriptors."""
    total = torch.zeros(network.descriptor_dim, dtype=torch.float64, device=images.device)
    squares = torch.zeros_like(total)
    count = 0
    for chunk in torch.split(images, batch_size):
        descriptors = network.dense(normalize(chunk)).double()
        total += descriptors.sum(dim=(0, 2, 3))
        squares += descriptors.pow(2).sum(dim=(0, 2, 3))
        count += descriptors.shape[0] * descriptors.shape[2] * descriptors.shape[3]
    mean = total / count
    std = (squares / count - mean.pow(2)).clamp_min(0).sqrt().clamp_min(1e-6)
    return mean.float(), std.float()


def train_students(
    students: Sequence[PatchNetwork],
    teacher: PatchNetwork,
    images: Tensor,
    mean: Tensor,
    std: Tensor,
    config: UninformedStudentsConfig,
    normalize: Normalize,
    generator: torch.Generator,
    *,
    label: str,
) -> list[float]:
    """Train every student to regress the teacher's normalized descriptors (in place).

    A NaN or infinite loss or weight raises :class:`~visionatlas_anomaly.errors.FitDivergedError`.
    """
    crop = config.student_crop(min(images.shape[-2:]))
    sampler = CropSampler.for_images(images, teacher.patch_size, crop, generator)
    parameters = [param for student in students for param in student.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=config.student_lr, weight_decay=config.weight_decay)
    scheduler = _schedule(optimizer, config.student_steps, config)
    scale = (mean[None, :, None, None], std[None, :, None, None])
    for student in students:
        student.train()
    stage = f"student training for patch size {teacher.patch_size}"
    steps = config.student_steps
    losses: list[float] = []
    with _bar(steps, f"students {label}", config.progress) as bar:
        for step in range(steps):
            crops = normalize(sampler.sample(config.batch_size))
            with torch.no_grad():
                target = (teacher.dense_valid(crops) - scale[0]) / scale[1]
            loss = torch.stack(
                [student_regression_loss(s.dense_valid(crops), target) for s in students]
            ).sum()
            losses.append(float(loss.detach()) / len(students))
            _check_loss(losses[-1], stage, step, steps, "lower student_lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            scheduler.step()
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            bar.update()
    _check_weights(parameters, stage, "student_lr")
    for student in students:
        student.eval()
    return losses
