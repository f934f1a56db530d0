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
    RejectedSpecError,
    ShapeInferenceError,
    UnknownArchitectureError,
    UnknownBackboneError,
    UnknownHeadError,
    UnknownNameError,
    UnknownTaskError,
    VisionAtlasError,
)
from visionatlas.inputs import InputCheck, checking_inputs, input_check
from visionatlas.plugins.hookspecs import API_MINOR_VERSION, API_VERSION, hookimpl
from visionatlas.plugins.lazy import LazyCall
from visionatlas.plugins.registrar import PluginReport, Problem, Registrar
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
    WeightsSpec,
)
from visionatlas.training.protocol import (
    CustomFitTraining,
    DataRequest,
    FitEvaluation,
    FitOutcome,
    FitRequest,
    LossOptions,
    PredictRequest,
    SkippedFile,
    TaskTraining,
    TrainingData,
)

if TYPE_CHECKING:
    from visionatlas.config import BackboneConfig, ModelConfig
    from visionatlas.lifecycle.checkpoint import (
        Checkpoint,
        CheckpointBusyError,
        CheckpointError,
        CorruptCheckpointError,
        load_checkpoint,
        read_checkpoint,
        save_checkpoint,
    )
    from visionatlas.lifecycle.export import (
        ExportError,
        ExportResult,
        export_program,
        load_program,
    )
    from visionatlas.lifecycle.onnx_export import export_onnx
    from visionatlas.lifecycle.rebuild import (
        MissingPluginError,
        rebuild_model,
    )
    from visionatlas.lifecycle.versioning.errors import (
        DamagedEntryError,
        InvalidVersionError,
        RegistryError,
        RegistryLockedError,
        UnknownModelError,
        UnknownVersionError,
        VersionExistsError,
    )
    from visionatlas.lifecycle.versioning.rows import ModelEntry
    from visionatlas.lifecycle.versioning.store import ModelRegistry
    from visionatlas.models.backbones.base import Backbone
    from visionatlas.models.composition import (
        BackboneHeadModel,
        CompositionConfig,
        compose_model,
    )
    from visionatlas.models.inspection import (
        LayerInfo,
        ModelSummary,
        count_parameters,
        infer_output_shape,
        summary,
    )

__version__ = "0.1.0"

_LAZY = {
    "Backbone": "visionatlas.models.backbones.base",
    "BackboneConfig": "visionatlas.config",
    "ModelConfig": "visionatlas.config",
    "LayerInfo": "visionatlas.models.inspection",
    "ModelSummary": "visionatlas.models.inspection",
    "count_parameters": "visionatlas.models.inspection",
    "infer_output_shape": "visionatlas.models.inspection",
    "summary": "visionatlas.models.inspection",
    "Checkpoint": "visionatlas.lifecycle.checkpoint",
    "CheckpointBusyError": "visionatlas.lifecycle.checkpoint",
    "CheckpointError": "visionatlas.lifecycle.checkpoint",
    "CorruptCheckpointError": "visionatlas.lifecycle.checkpoint",
    "load_checkpoint": "visionatlas.lifecycle.checkpoint",
    "read_checkpoint": "visionatlas.lifecycle.checkpoint",
    "save_checkpoint": "visionatlas.lifecycle.checkpoint",
    "BackboneHeadModel": "visionatlas.models.composition",
    "CompositionConfig": "visionatlas.models.composition",
    "compose_model": "visionatlas.models.composition",
    "ExportError": "visionatlas.lifecycle.export",
    "ExportResult": "visionatlas.lifecycle.export",
    "export_onnx": "visionatlas.lifecycle.onnx_export",
    "export_program": "visionatlas.lifecycle.export",
    "load_program": "visionatlas.lifecycle.export",
    "MissingPluginError": "visionatlas.lifecycle.rebuild",
    "rebuild_model": "visionatlas.lifecycle.rebuild",
    "InvalidVersionError": "visionatlas.lifecycle.versioning.errors",
    "RegistryError": "visionatlas.lifecycle.versioning.errors",
    "RegistryLockedError": "visionatlas.lifecycle.versioning.errors",
    "DamagedEntryError": "visionatlas.lifecycle.versioning.errors",
    "UnknownModelError": "visionatlas.lifecycle.versioning.errors",
    "UnknownVersionError": "visionatlas.lifecycle.versioning.errors",
    "VersionExistsError": "visionatlas.lifecycle.versioning.errors",
    "ModelEntry": "visionatlas.lifecycle.versioning.rows",
    "ModelRegistry": "visionatlas.lifecycle.versioning.store",
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
    "API_MINOR_VERSION",
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
    "LazyCall",
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
    "PredictRequest",
    "PretrainedWeightsError",
    "Problem",
    "Registrar",
    "RegistryError",
    "RegistryLockedError",
    "RejectedSpecError",
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
    "WeightsSpec",
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
    "load_program",
    "read_checkpoint",
    "rebuild_model",
    "register",
    "register_plugin",
    "save_checkpoint",
    "set_catalog",
    "summary",
    "use_catalog",
]
