"""Training and evaluation for visionatlas tasks, on PyTorch Lightning.

``train(task, architecture, data, config)`` trains a catalog model with its catalog
defaults (overridable by a :class:`TrainConfig`, a file or ``key=value`` pairs) and returns
the fitted model with its metrics; ``evaluate(source, data)`` reports a trained model's
metrics on held-out data. Importing this package is cheap: torch and lightning load on
first use of the names that need them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from visionatlas_train.checkpoint_io import VisionAtlasCheckpointIO
    from visionatlas_train.config import (
        ConfigError,
        EarlyStoppingConfig,
        OptimizerConfig,
        SchedulerConfig,
        TrainConfig,
        resolve_config,
    )
    from visionatlas_train.engine import (
        EvaluationResult,
        TrainError,
        TrainResult,
        evaluate,
        train,
    )
    from visionatlas_train.finetuning import TwoPhaseFinetuning
    from visionatlas_train.module import DivergedError, TrainingModule
    from visionatlas_train.predict import PredictionResult, predict

_LAZY = {
    "ConfigError": "visionatlas_train.config",
    "EarlyStoppingConfig": "visionatlas_train.config",
    "OptimizerConfig": "visionatlas_train.config",
    "SchedulerConfig": "visionatlas_train.config",
    "TrainConfig": "visionatlas_train.config",
    "resolve_config": "visionatlas_train.config",
    "EvaluationResult": "visionatlas_train.engine",
    "TrainError": "visionatlas_train.engine",
    "TrainResult": "visionatlas_train.engine",
    "evaluate": "visionatlas_train.engine",
    "train": "visionatlas_train.engine",
    "VisionAtlasCheckpointIO": "visionatlas_train.checkpoint_io",
    "TwoPhaseFinetuning": "visionatlas_train.finetuning",
    "PredictionResult": "visionatlas_train.predict",
    "predict": "visionatlas_train.predict",
    "DivergedError": "visionatlas_train.module",
    "TrainingModule": "visionatlas_train.module",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'visionatlas_train' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ConfigError",
    "DivergedError",
    "EarlyStoppingConfig",
    "EvaluationResult",
    "OptimizerConfig",
    "PredictionResult",
    "SchedulerConfig",
    "TrainConfig",
    "TrainError",
    "TrainResult",
    "TrainingModule",
    "TwoPhaseFinetuning",
    "VisionAtlasCheckpointIO",
    "evaluate",
    "predict",
    "resolve_config",
    "train",
]
