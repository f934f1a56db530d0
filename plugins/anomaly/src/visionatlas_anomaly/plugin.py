"""Hook implementations of the anomaly-detection plugin (imports no torch)."""

from __future__ import annotations

from visionatlas import hookimpl
from visionatlas.plugins.registrar import Registrar
from visionatlas.specs import (
    ArchitectureSpec,
    CommandSpec,
    Hyperparameters,
    TaskSpec,
    TrainingSpec,
)
from visionatlas_anomaly.layers import model_params

TASK = "anomaly_detection"
ARCHITECTURE = "uninformed_students_resnet18"
DEFAULT_PATCH_SIZES = (17, 33)
DEFAULT_STUDENTS = 3
DESCRIPTOR_DIM = 128
DEFAULT_WIDTH = 0.5


@hookimpl
def visionatlas_api_version() -> int:
    return 1


@hookimpl
def visionatlas_register_tasks(registrar: Registrar) -> None:
    registrar.add_task(
        TaskSpec(
            name=TASK,
            display_name="Anomaly detection",
            description=(
                "One-class: fit on normal images; (N, 3, H, W) images in [0, 1] -> (N, H, W) "
                "anomaly maps, image scores and a calibrated threshold."
            ),
            demo_architecture=ARCHITECTURE,
            example_inputs="visionatlas_anomaly.examples:example_images",
            uses_num_classes=False,
        )
    )


@hookimpl
def visionatlas_register_architectures(registrar: Registrar) -> None:
    registrar.add_architecture(
        ArchitectureSpec(
            task=TASK,
            name=ARCHITECTURE,
            builder="visionatlas_anomaly.model:build_uninformed_students",
            config_class="visionatlas_anomaly.config:UninformedStudentsConfig",
            display_name="Uninformed Students (ResNet-18 teacher)",
            note=(
                "Student-teacher anomaly detection (Bergmann et al., CVPR 2020): dense patch "
                "descriptors at patch sizes 17 and 33, 3 students each"
            ),
            num_params=model_params(
                DEFAULT_PATCH_SIZES, DEFAULT_STUDENTS, DESCRIPTOR_DIM, DEFAULT_WIDTH
            ),
            default_num_classes=1,
            hyperparameters=Hyperparameters(
                learning_rate=2e-3,
                batch_size=4,
                input_size=(128, 128),
                epochs=1,
                optimizer="adam",
                weight_decay=1e-5,
            ),
            pretrained_available=False,
            backbone="resnet18",
            tags=("anomaly", "student-teacher", "one-class", "dense"),
        )
    )


@hookimpl
def visionatlas_register_training(registrar: Registrar) -> None:
    """``visionatlas train anomaly_detection ...`` runs the detector's own fit (imported
    lazily): the task's pieces are a CustomFitTraining, not a per-batch loss."""
    registrar.add_training(
        TrainingSpec(
            task=TASK,
            builder="visionatlas_anomaly.trainable:AnomalyTraining",
            description="MVTec AD category folders (or builtin:stripes, ...): the "
            "detector's own fit (teachers, students, calibration); image AUROC, pixel "
            "AUROC and PRO on the test split",
        )
    )


@hookimpl
def visionatlas_register_commands(registrar: Registrar) -> None:
    registrar.add_command(
        CommandSpec(
            name="anomaly",
            help="Anomaly detection: fit, predict and benchmark Uninformed Students",
            configure="visionatlas_anomaly.cli:configure",
        )
    )
