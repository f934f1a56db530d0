"""Hook implementations of the regression plugin (imports no torch)."""

from __future__ import annotations

from visionatlas import hookimpl
from visionatlas.derive import register_backbone_architectures
from visionatlas.models.heads.params import linear_head_params
from visionatlas.plugins.registrar import Registrar
from visionatlas.specs import HeadSpec, TaskSpec, TrainingSpec

TASK = "regression"
HEAD = "regression"


@hookimpl
def visionatlas_api_version() -> int:
    return 1


@hookimpl
def visionatlas_register_tasks(registrar: Registrar) -> None:
    registrar.add_task(
        TaskSpec(
            name=TASK,
            display_name="Image regression",
            description="Continuous targets per image: (N, 3, H, W) -> (N, num_outputs).",
            demo_architecture="resnet18",
            uses_num_classes=False,
            input_kind="image_batch",
        )
    )


@hookimpl
def visionatlas_register_heads(registrar: Registrar) -> None:
    registrar.add_head(
        HeadSpec(
            name=HEAD,
            builder="visionatlas.models.heads.linear:LinearHead",
            description="Dropout and a linear layer producing num_outputs values",
            count_params=linear_head_params,
        )
    )


@hookimpl
def visionatlas_register_architectures(registrar: Registrar) -> None:
    """Every registered backbone becomes a regression architecture of the same name."""
    register_backbone_architectures(
        registrar,
        task=TASK,
        builder="visionatlas_regression.model:build_regressor",
        default_num_classes=1,
        config_class="visionatlas_regression.config:RegressionConfig",
    )


@hookimpl
def visionatlas_register_training(registrar: Registrar) -> None:
    """Regression trains on CSVs of image paths and targets, or ``builtin:digits``."""
    registrar.add_training(
        TrainingSpec(
            task=TASK,
            builder="visionatlas_regression.training:RegressionTraining",
            description="CSV of image paths and numeric targets (split by a fraction, or "
            "train.csv and val.csv), mean squared error; MAE, RMSE, R2",
        )
    )
