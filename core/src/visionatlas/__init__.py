"""visionatlas: a plugin-based catalog of PyTorch computer-vision architectures.

Importing this package is cheap: torch, torchvision and pydantic load on first use of the
names that need them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from visionatlas.api import (
    config_schema,
    create_backbone,
    create_head,
    create_model,
    get_architecture,
    get_backbone,
    get_task,
    list_architectures,
    list_backbones,
    list_heads,
    list_plugins,
    list_tasks,
    register,
    register_plugin,
)
from visionatlas.catalog import BuildInfo, Catalog, get_catalog, set_catalog, use_catalog
from visionatlas.errors import (
    DatasetError,
    DuplicateNameError,
    ImageReadError,
    ImageTooLargeError,
    IncompatibleBackboneError,
    InvalidArgumentError,
    InvalidInputError,
    NonFiniteInputError,
    PluginError,
    PretrainedWeightsError,
    ShapeInferenceError,
    UnknownArchitectureError,
    UnknownBackboneError,
    UnknownHeadError,
    UnknownNameError,
    UnknownTaskError,
    VisionAtlasError,
)
from visionatlas.hookspecs import API_VERSION, hookimpl
from visionatlas.inputs import InputCheck, checking_inputs, input_check
from visionatlas.registry import PluginReport, Problem, Registrar
from visionatlas.specs import (
    ArchitectureSpec,
    BackboneSpec,
    CommandSpec,
    FeatureLevel,
    HeadSpec,
    Hyperparameters,
    PluginRef,
    TaskSpec,
    TrainingSpec,
)
from visionatlas.task_training import (
    CustomFitTraining,
    DataRequest,
    FitEvaluation,
    FitOutcome,
    FitRequest,
    LossOptions,
    SkippedFile,
    TaskTraining,
    TrainingData,
)

if TYPE_CHECKING:
    from visionatlas.backbones.base import Backbone
    from visionatlas.checkpoint import (
        Checkpoint,
        CheckpointBusyError,
        CheckpointError,
        CorruptCheckpointError,
        load_checkpoint,
        read_checkpoint,
        save_checkpoint,
    )
    from visionatlas.composition import (
        BackboneHeadModel,
        CompositionConfig,
        compose_model,
    )
    from visionatlas.config import BackboneConfig, ModelConfig
    from visionatlas.export import (
        ExportError,
        ExportResult,
        export_onnx,
        export_program,
    )
    from visionatlas.inspection import (
        LayerInfo,
        ModelSummary,
        count_parameters,
        infer_output_shape,
        summary,
    )
    from visionatlas.rebuild import (
        MissingPluginError,
        rebuild_model,
    )
    from visionatlas.versioning.errors import (
        DamagedEntryError,
        InvalidVersionError,
        RegistryError,
        RegistryLockedError,
        UnknownModelError,
        UnknownVersionError,
        VersionExistsError,
    )
    from visionatlas.versioning.store import (
        ModelEntry,
        ModelRegistry,
    )

__version__ = "0.1.0"

_LAZY = {
    "Backbone": "visionatlas.backbones.base",
    "BackboneConfig": "visionatlas.config",
    "ModelConfig": "visionatlas.config",
    "LayerInfo": "visionatlas.inspection",
    "ModelSummary": "visionatlas.inspection",
    "count_parameters": "visionatlas.inspection",
    "infer_output_shape": "visionatlas.inspection",
    "summary": "visionatlas.inspection",
    "Checkpoint": "visionatlas.checkpoint",
    "CheckpointBusyError": "visionatlas.checkpoint",
    "CheckpointError": "visionatlas.checkpoint",
    "CorruptCheckpointError": "visionatlas.checkpoint",
    "load_checkpoint": "visionatlas.checkpoint",
    "read_checkpoint": "visionatlas.checkpoint",
    "save_checkpoint": "visionatlas.checkpoint",
    "BackboneHeadModel": "visionatlas.composition",
    "CompositionConfig": "visionatlas.composition",
    "compose_model": "visionatlas.composition",
    "ExportError": "visionatlas.export",
    "ExportResult": "visionatlas.export",
    "export_onnx": "visionatlas.export",
    "export_program": "visionatlas.export",
    "MissingPluginError": "visionatlas.rebuild",
    "rebuild_model": "visionatlas.rebuild",
    "InvalidVersionError": "visionatlas.versioning.errors",
    "RegistryError": "visionatlas.versioning.errors",
    "RegistryLockedError": "visionatlas.versioning.errors",
    "DamagedEntryError": "visionatlas.versioning.errors",
    "UnknownModelError": "visionatlas.versioning.errors",
    "UnknownVersionError": "visionatlas.versioning.errors",
    "VersionExistsError": "visionatlas.versioning.errors",
    "ModelEntry": "visionatlas.versioning.store",
    "ModelRegistry": "visionatlas.versioning.store",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'visionatlas' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "API_VERSION",
    "ArchitectureSpec",
    "Backbone",
    "BackboneConfig",
    "BackboneHeadModel",
    "BackboneSpec",
    "BuildInfo",
    "Catalog",
    "Checkpoint",
    "CheckpointBusyError",
    "CheckpointError",
    "CommandSpec",
    "CompositionConfig",
    "CorruptCheckpointError",
    "CustomFitTraining",
    "DamagedEntryError",
    "DataRequest",
    "DatasetError",
    "DuplicateNameError",
    "ExportError",
    "ExportResult",
    "FeatureLevel",
    "FitEvaluation",
    "FitOutcome",
    "FitRequest",
    "HeadSpec",
    "Hyperparameters",
    "ImageReadError",
    "ImageTooLargeError",
    "IncompatibleBackboneError",
    "InputCheck",
    "InvalidArgumentError",
    "InvalidInputError",
    "InvalidVersionError",
    "LayerInfo",
    "LossOptions",
    "MissingPluginError",
    "ModelConfig",
    "ModelEntry",
    "ModelRegistry",
    "ModelSummary",
    "NonFiniteInputError",
    "PluginError",
    "PluginRef",
    "PluginReport",
    "PretrainedWeightsError",
    "Problem",
    "Registrar",
    "RegistryError",
    "RegistryLockedError",
    "ShapeInferenceError",
    "SkippedFile",
    "TaskSpec",
    "TaskTraining",
    "TrainingData",
    "TrainingSpec",
    "UnknownArchitectureError",
    "UnknownBackboneError",
    "UnknownHeadError",
    "UnknownModelError",
    "UnknownNameError",
    "UnknownTaskError",
    "UnknownVersionError",
    "VersionExistsError",
    "VisionAtlasError",
    "__version__",
    "checking_inputs",
    "compose_model",
    "config_schema",
    "count_parameters",
    "create_backbone",
    "create_head",
    "create_model",
    "export_onnx",
    "export_program",
    "get_architecture",
    "get_backbone",
    "get_catalog",
    "get_task",
    "hookimpl",
    "infer_output_shape",
    "input_check",
    "list_architectures",
    "list_backbones",
    "list_heads",
    "list_plugins",
    "list_tasks",
    "load_checkpoint",
    "read_checkpoint",
    "rebuild_model",
    "register",
    "register_plugin",
    "save_checkpoint",
    "set_catalog",
    "summary",
    "use_catalog",
]
