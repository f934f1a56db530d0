"""Plain-data descriptions of what plugins register.

Specs are frozen dataclasses that import neither torch nor pydantic, so that listing the
catalog stays cheap. Builders are given either as a callable or as a ``"module:attribute"``
reference that is imported on first use.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "INPUT_KINDS",
    "ArchitectureSpec",
    "BackboneSpec",
    "Builder",
    "CommandSpec",
    "FeatureLevel",
    "HeadSpec",
    "Hyperparameters",
    "PluginRef",
    "TaskSpec",
    "TrainingSpec",
    "WeightsSpec",
]

Builder = str | Callable[..., Any]
"""A callable, or a lazy ``"package.module:attribute"`` reference to one."""

INPUT_KINDS: Mapping[str, str] = MappingProxyType(
    {
        "image_batch": "a float tensor of shape (N, 3, H, W)",
        "image_list": "a list of float (3, H, W) tensors (sizes may differ) or a float "
        "(N, 3, H, W) tensor",
    }
)
"""The input kinds a task can declare (``TaskSpec.input_kind``) and what each accepts."""

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_.\-]*(/[a-z0-9][a-z0-9_.\-]*)?$")
"""Lowercase names, with one optional namespace: ``resnet50``, ``timm/convnext_tiny``."""
REFERENCE_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclass(frozen=True, kw_only=True)
class PluginRef:
    """Who provided a registration: the plugin name and its distribution."""

    name: str
    distribution: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        if self.distribution is None:
            return f"plugin {self.name!r}"
        return f"plugin {self.name!r} ({self.distribution} {self.version})"


@dataclass(frozen=True, kw_only=True)
class FeatureLevel:
    """One level of a backbone's multi-scale output, named ``feat1`` ... ``feat4``."""

    name: str
    channels: int
    stride: int


@dataclass(frozen=True, kw_only=True)
class Hyperparameters:
    """Default training hyperparameters shown when an architecture is selected."""

    learning_rate: float = 1e-3
    batch_size: int = 32
    input_size: tuple[int, int] = (224, 224)
    epochs: int = 30
    optimizer: str = "adamw"
    weight_decay: float = 1e-4

    def as_dict(self) -> dict[str, Any]:
        return {
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "input_size": list(self.input_size),
            "epochs": self.epochs,
            "optimizer": self.optimizer,
            "weight_decay": self.weight_decay,
        }


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """A task family, such as ``classification``.

    ``example_inputs`` builds a synthetic batch for the demo and for contract checks; it is
    called as ``example_inputs(batch_size=..., input_size=(h, w))``. When omitted, a batch of
    ``(N, 3, H, W)`` images in [0, 1] is used.

    ``input_kind`` declares what the task's models take as their first ``forward`` argument,
    one of :data:`INPUT_KINDS`: ``"image_batch"`` or ``"image_list"``. Models built by
    ``create_model`` for such a task check their inputs against it (type, shape, dtype;
    finite values on request). ``None`` (the default) declares nothing and installs no check.
    """

    name: str
    display_name: str
    description: str = ""
    demo_architecture: str | None = None
    example_inputs: Builder | None = None
    uses_num_classes: bool = True
    input_kind: str | None = None
    provider: PluginRef | None = None


@dataclass(frozen=True, kw_only=True)
class WeightsSpec:
    """Where a plugin backbone's pretrained weights come from, for the core to load.

    The file is looked for at ``$TORCH_HOME/hub/checkpoints/<file_name>`` and downloaded
    there from ``url`` when missing (unless ``VISIONATLAS_OFFLINE`` is set). ``sha256``, when
    given, is checked for the cached and the downloaded file. Keys starting with a
    ``key_map`` prefix are renamed before loading (``{"head.fc.": "classifier."}``), and the
    keys under ``classifier_prefix`` are the checkpoint's final layer (kept for a head to
    adopt, not loaded into the trunk).
    """

    url: str
    file_name: str = ""
    sha256: str | None = None
    key_map: Mapping[str, str] = field(default_factory=dict, hash=False)
    classifier_prefix: str | None = None
    name: str = "DEFAULT"

    @property
    def file(self) -> str:
        """The cache file name: ``file_name``, else the last part of the URL's path."""
        if self.file_name:
            return self.file_name
        return posixpath.basename(urlsplit(self.url).path)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "file_name": self.file,
            "sha256": self.sha256,
        }


@dataclass(frozen=True, kw_only=True)
class BackboneSpec:
    """A feature extractor.

    ``builder(config: BackboneConfig) -> Backbone``. ``num_params`` counts the backbone module
    as built with ``num_classes=0`` (trunk plus the family's pre-logits layers);
    ``pre_logits_dim`` is the width of the pooled vector that a head receives.
    """

    name: str
    builder: Builder
    family: str
    display_name: str = ""
    out_channels: int
    pre_logits_dim: int
    num_params: int | None = None
    feature_levels: tuple[FeatureLevel, ...] = ()
    pretrained_weights: str | WeightsSpec | None = None
    default_input_size: int = 224
    min_input_size: int = 32
    default_drop_rate: float = 0.0
    note: str = ""
    tags: tuple[str, ...] = ()
    provider: PluginRef | None = None

    @property
    def multiscale(self) -> bool:
        """Whether the backbone offers feature maps at more than one stride."""
        return len(self.feature_levels) > 1

    @property
    def num_features(self) -> int:
        return self.out_channels

    @property
    def title(self) -> str:
        return self.display_name or self.name

    @property
    def weights_label(self) -> str | None:
        """The weights in one short line: the torchvision reference or the file name."""
        weights = self.pretrained_weights
        return weights.file if isinstance(weights, WeightsSpec) else weights

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready metadata, as shown by ``visionatlas backbones --json``."""
        provider = self.provider
        return {
            "name": self.name,
            "display_name": self.title,
            "family": self.family,
            "num_params": self.num_params,
            "out_channels": self.out_channels,
            "pre_logits_dim": self.pre_logits_dim,
            "feature_levels": [
                {"name": lv.name, "channels": lv.channels, "stride": lv.stride}
                for lv in self.feature_levels
            ],
            "multiscale": self.multiscale,
            "pretrained_weights": (
                self.pretrained_weights.as_dict()
                if isinstance(self.pretrained_weights, WeightsSpec)
                else self.pretrained_weights
            ),
            "default_input_size": self.default_input_size,
            "min_input_size": self.min_input_size,
            "note": self.note,
            "tags": list(self.tags),
            "plugin": provider.name if provider else None,
        }


@dataclass(frozen=True, kw_only=True)
class HeadSpec:
    """A reusable head, built as ``builder(in_features=..., num_outputs=..., dropout=...)``.

    ``count_params(in_features, num_outputs)`` returns the head's parameter count without
    building it; it must not import torch.
    """

    name: str
    builder: Builder
    description: str = ""
    count_params: Callable[[int, int], int] | None = None
    provider: PluginRef | None = None


@dataclass(frozen=True, kw_only=True)
class ArchitectureSpec:
    """A ready-to-use model for a task.

    ``builder(config, num_classes) -> nn.Module`` where ``config`` is an instance of
    ``config_class`` (a ``ModelConfig`` subclass, given as a class or a lazy reference).
    ``num_params`` is the parameter count for ``default_num_classes`` and the default config.
    """

    task: str
    name: str
    builder: Builder
    display_name: str = ""
    note: str = ""
    num_params: int | None = None
    default_num_classes: int = 1000
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    pretrained_available: bool = False
    backbone: str | None = None
    compatible_backbones: tuple[str, ...] = ()
    config_class: Builder | None = None
    tags: tuple[str, ...] = ()
    provider: PluginRef | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.task, self.name)

    @property
    def title(self) -> str:
        return self.display_name or self.name

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready metadata, as shown by ``visionatlas show``."""
        provider = self.provider
        return {
            "task": self.task,
            "name": self.name,
            "display_name": self.title,
            "note": self.note,
            "num_params": self.num_params,
            "default_num_classes": self.default_num_classes,
            "pretrained_available": self.pretrained_available,
            "backbone": self.backbone,
            "compatible_backbones": list(self.compatible_backbones),
            "hyperparameters": self.hyperparameters.as_dict(),
            "tags": list(self.tags),
            "plugin": provider.name if provider else None,
            "distribution": provider.distribution if provider else None,
            "version": provider.version if provider else None,
        }


@dataclass(frozen=True, kw_only=True)
class CommandSpec:
    """A subcommand a plugin adds to the ``visionatlas`` command line.

    ``configure(parser: argparse.ArgumentParser) -> None`` receives the subcommand's own
    parser (prog ``visionatlas NAME``), adds its arguments and sets a ``handler`` default:
    a callable ``handler(args: argparse.Namespace) -> int`` returning the exit code. It is
    imported only when the subcommand runs, so listing commands stays cheap.
    """

    name: str
    configure: Builder
    help: str = ""
    provider: PluginRef | None = None


@dataclass(frozen=True, kw_only=True)
class TrainingSpec:
    """What makes a task trainable: its loss, metrics, data readers and augmentations.

    ``builder() -> TaskTraining`` (see :mod:`visionatlas.training.protocol`), or
    ``-> CustomFitTraining`` for a task that trains with its own fit, is imported and
    called only when a run starts, so registering it costs nothing. One per task; the
    task may come from another plugin.
    """

    task: str
    builder: Builder
    description: str = ""
    provider: PluginRef | None = None

    @property
    def name(self) -> str:
        return self.task
