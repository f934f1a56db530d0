"""Hook implementations of the classification plugin (imports no torch)."""

from __future__ import annotations

from visionatlas import hookimpl
from visionatlas.derive import register_backbone_architectures
from visionatlas.models.heads.params import linear_head_params
from visionatlas.plugins.registrar import Registrar
from visionatlas.specs import HeadSpec, TaskSpec, TrainingSpec

TASK = "classification"
HEAD = "classification"
IMAGENET_CLASSES = 1000


@hookimpl
def visionatlas_api_version() -> int:
    return 1


@hookimpl
def visionatlas_register_tasks(registrar: Registrar) -> None:
    registrar.add_task(
        TaskSpec(
            name=TASK,
            display_name="Image classification",
            description="One label per image: (N, 3, H, W) images -> (N, num_classes) logits.",
            demo_architecture="resnet18",
            input_kind="image_batch",
        )
    )


@hookimpl
def visionatlas_register_heads(registrar: Registrar) -> None:
    registrar.add_head(
        HeadSpec(
            name=HEAD,
            builder="visionatlas.models.heads.linear:LinearHead",
            description="Dropout and a linear layer producing class logits",
            count_params=linear_head_params,
        )
    )


@hookimpl
def visionatlas_register_architectures(registrar: Registrar) -> None:
    """Every registered backbone becomes a classification architecture of the same name."""
    register_backbone_architectures(
        registrar,
        task=TASK,
        builder="visionatlas_classification.model:build_classifier",
        default_num_classes=IMAGENET_CLASSES,
    )


@hookimpl
def visionatlas_register_training(registrar: Registrar) -> None:
    """Classification trains on ImageFolder data or ``builtin:digits`` (imported lazily)."""
    registrar.add_training(
        TrainingSpec(
            task=TASK,
            builder="visionatlas_classification.training:ClassificationTraining",
            description="ImageFolder data (train/ and val/, or split by a fraction), "
            "cross-entropy with label smoothing, mixup and cutmix; top-1/top-5 accuracy, "
            "macro F1, confusion matrix",
        )
    )
