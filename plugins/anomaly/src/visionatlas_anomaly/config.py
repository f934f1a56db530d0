"""The validated configuration of an Uninformed Students detector."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from visionatlas.config import BackboneConfig, ModelConfig
from visionatlas_anomaly.devices import check_device_name
from visionatlas_anomaly.layers import SUPPORTED_PATCH_SIZES

__all__ = ["UninformedStudentsConfig", "validation_summary"]

DISTILLATION_BACKBONE = "resnet18"


class UninformedStudentsConfig(ModelConfig):
    """Options of :class:`~visionatlas_anomaly.model.UninformedStudents`.

    The inherited ``pretrained`` and ``weights_path`` describe the ImageNet ResNet-18 that
    the teachers distil: ``pretrained=True`` (or a ``weights_path``) makes distillation
    required; otherwise ``teacher_distillation`` decides. ``head``, ``dropout`` and
    ``freeze_backbone`` do not apply to this architecture.

    Numbers and booleans are strict: ``"0.3"``, ``"true"`` or ``1`` for a boolean are
    rejected (an integer is accepted for a float), and floats must be finite.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    patch_sizes: tuple[StrictInt, ...] = Field(
        default=(17, 33), description="Patch sizes (scales) of the teacher/student networks"
    )
    num_students: StrictInt = Field(default=3, ge=1, le=16, description="Students per patch size")
    descriptor_dim: StrictInt = Field(
        default=128, ge=2, le=1024, description="Descriptor dimension"
    )
    width: StrictFloat = Field(
        default=0.5,
        gt=0.0,
        le=4.0,
        description="Multiplier of the hidden channels (paper: 1.0; 0.5 halves CPU time)",
    )
    teacher_distillation: Literal["auto", "required", "off"] = Field(
        default="auto",
        description=(
            "Distil an ImageNet ResNet-18 into the teachers: 'auto' when its weights can be "
            "had (else self-supervised teachers, with a warning), 'required', or 'off'"
        ),
    )
    distillation_weight: StrictFloat = Field(default=1.0, ge=0.0, description="Weight of L_k")
    triplet_weight: StrictFloat = Field(
        default=1.0, ge=0.0, description="Weight of the triplet loss"
    )
    compactness_weight: StrictFloat = Field(
        default=1.0, ge=0.0, description="Weight of the descriptor compactness loss"
    )
    triplet_margin: StrictFloat = Field(default=1.0, gt=0.0, description="Triplet loss margin")
    positive_shift: StrictInt = Field(
        default=2, ge=0, le=8, description="Largest translation (px) of triplet positives"
    )
    positive_noise: StrictFloat = Field(
        default=0.02, ge=0.0, le=0.5, description="Gaussian noise std of triplet positives"
    )
    distillation_input_size: StrictInt = Field(
        default=224, ge=32, le=512, description="Patches are resized to this for ResNet-18"
    )
    teacher_steps: StrictInt = Field(
        default=100, ge=0, description="Teacher training steps per scale"
    )
    teacher_lr: StrictFloat = Field(
        default=2e-4, gt=0.0, le=1.0, description="Teacher learning rate (Adam)"
    )
    teacher_batch_size: StrictInt = Field(
        default=8, ge=2, description="Image crops (self-supervised) or patches (distillation)"
    )
    teacher_crop_size: StrictInt | None = Field(
        default=None,
        ge=4,
        description=(
            "Output side of the crops of self-supervised training "
            "(default: an eighth of the shorter image side, at least 16)"
        ),
    )
    student_steps: StrictInt = Field(
        default=500, ge=1, description="Student training steps per scale"
    )
    student_lr: StrictFloat = Field(
        default=2e-3, gt=0.0, le=1.0, description="Student learning rate (Adam)"
    )
    lr_schedule: Literal["cosine", "constant"] = Field(
        default="cosine", description="Learning-rate schedule of teacher and student training"
    )
    weight_decay: StrictFloat = Field(default=1e-5, ge=0.0, le=1.0, description="Adam weight decay")
    batch_size: StrictInt = Field(default=4, ge=1, description="Image crops per student step")
    crop_size: StrictInt | None = Field(
        default=None,
        ge=4,
        description=(
            "Output side of the crops students are trained on "
            "(default: a quarter of the shorter image side, at least 32)"
        ),
    )
    validation_fraction: StrictFloat = Field(
        default=0.2,
        gt=0.0,
        lt=1.0,
        description="Share of the normal images held out for calibration (if none are given)",
    )
    threshold_quantile: StrictFloat = Field(
        default=0.99,
        gt=0.0,
        le=1.0,
        description="Quantile of held-out normal image scores used as the threshold",
    )
    score_smoothing: StrictFloat = Field(
        default=0.0, ge=0.0, le=16.0, description="Gaussian sigma (px) applied to the maps"
    )
    inference_batch_size: StrictInt = Field(default=2, ge=1, description="Images per dense pass")
    device: str = Field(
        default="cpu", min_length=1, description="'cpu', 'cuda', 'cuda:1', 'mps' or 'xpu'"
    )
    num_threads: StrictInt | None = Field(
        default=None, ge=1, description="torch CPU threads while fitting (default: unchanged)"
    )
    seed: StrictInt = Field(default=0, ge=0, description="Seed of initialization and sampling")
    progress: StrictBool = Field(default=True, description="Show tqdm progress bars")

    @field_validator("patch_sizes")
    @classmethod
    def _check_patch_sizes(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("patch_sizes must name at least one patch size")
        unknown = [p for p in value if p not in SUPPORTED_PATCH_SIZES]
        if unknown:
            raise ValueError(
                f"unsupported patch sizes {unknown}; supported: {list(SUPPORTED_PATCH_SIZES)}"
            )
        if len(set(value)) != len(value):
            raise ValueError(f"patch_sizes has duplicates: {list(value)}")
        return tuple(sorted(value))

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        return check_device_name(value)

    @model_validator(mode="after")
    def _check_inherited(self) -> UninformedStudentsConfig:
        backbone = self.backbone
        name = backbone.model_name if isinstance(backbone, BackboneConfig) else backbone
        if name not in (None, DISTILLATION_BACKBONE):
            raise ValueError(
                f"backbone must be {DISTILLATION_BACKBONE!r} (the network the teachers "
                f"distil) or unset, got {name!r}"
            )
        unsupported = [
            field
            for field, value in (("head", self.head), ("dropout", self.dropout))
            if value is not None
        ]
        if unsupported:
            raise ValueError(
                f"{' and '.join(unsupported)} do not apply to Uninformed Students; leave unset"
            )
        if self.teacher_distillation == "off" and (self.pretrained or self.weights_path):
            raise ValueError(
                "teacher_distillation='off' contradicts pretrained=True / weights_path, which "
                "ask for the ResNet-18 teacher distillation"
            )
        return self

    @property
    def distillation_mode(self) -> Literal["auto", "required", "off"]:
        """``required`` when ``pretrained`` or a ``weights_path`` asks for ResNet-18."""
        if self.pretrained or self.weights_path is not None:
            return "required"
        return self.teacher_distillation

    def student_crop(self, image_side: int) -> int:
        """``crop_size``, or its default for images whose shorter side is ``image_side``."""
        return self.crop_size if self.crop_size is not None else max(32, image_side // 4)

    def teacher_crop(self, image_side: int) -> int:
        """``teacher_crop_size``, or its default for a shorter image side ``image_side``."""
        if self.teacher_crop_size is not None:
            return self.teacher_crop_size
        return max(16, image_side // 8)

    def resnet_config(self) -> BackboneConfig:
        """The backbone config of the distilled ResNet-18 (pretrained)."""
        config = self.backbone_config(DISTILLATION_BACKBONE)
        return config.model_copy(update={"pretrained": True})


def validation_summary(err: ValidationError) -> str:
    """One line per pydantic error joined by ``; ``: ``field: message (got value)``."""
    parts = []
    for item in err.errors():
        where = ".".join(str(part) for part in item["loc"]) or "options"
        value = repr(item["input"])
        got = f" (got {value if len(value) <= 60 else value[:57] + '...'})" if item["loc"] else ""
        parts.append(f"{where}: {item['msg']}{got}")
    return "; ".join(parts)
