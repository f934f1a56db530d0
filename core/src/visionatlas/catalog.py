"""The catalog: read-only queries over what plugins registered, and model construction.

Queries (tasks, architectures, backbones, metadata) import neither torch nor pydantic;
building a model imports the providing plugin's heavy module on first use.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from visionatlas.building import (
    BuildInfo,
    build_backbone,
    build_model,
    config_class,
    load_reference,
    make_backbone_config,
    make_config,
)
from visionatlas.errors import (
    DuplicateNameError,
    InvalidArgumentError,
    PluginError,
    UnknownArchitectureError,
    UnknownBackboneError,
    UnknownHeadError,
    UnknownTaskError,
    UnknownTrainingError,
)
from visionatlas.plugins.discovery import LoadedPlugins, load_plugins, programmatic_report
from visionatlas.plugins.first_party import install_hint
from visionatlas.plugins.registrar import PluginReport, Registrar, describe_error
from visionatlas.specs import (
    ArchitectureSpec,
    BackboneSpec,
    CommandSpec,
    HeadSpec,
    Hyperparameters,
    TaskSpec,
    TrainingSpec,
)
from visionatlas.training.protocol import CustomFitTraining, TaskTraining, missing_members

if TYPE_CHECKING:
    from torch import nn

    from visionatlas.config import BackboneConfig, ModelConfig
    from visionatlas.models.backbones.base import Backbone

__all__ = [
    "BuildInfo",
    "Catalog",
    "current_catalog",
    "get_catalog",
    "set_catalog",
    "use_catalog",
]

F = TypeVar("F", bound=Callable[..., Any])


def _matches(name: str, pattern: str | None) -> bool:
    return pattern is None or fnmatch.fnmatchcase(name.lower(), pattern.lower())


def _name(value: Any, argument: str, kind: str, available: Callable[[], Iterable[str]]) -> str:
    """``value`` if it is a name (a str); else :class:`InvalidArgumentError` listing names."""
    if isinstance(value, str):
        return value
    from visionatlas.errors import listing

    raise InvalidArgumentError(
        argument, value, f"{kind} name (a str; available: {listing(sorted(available()))})"
    )


def _optional_text(value: Any, argument: str, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidArgumentError(argument, value, f"None or {what} (a str)")


class Catalog:
    """A set of discovered plugins and everything they registered.

    ``Catalog()`` discovers built-ins and entry points on first use. Pass
    ``entry_points=False`` and ``plugins=[...]`` for an isolated catalog (tests, notebooks).
    """

    def __init__(
        self,
        *,
        builtins: bool = True,
        entry_points: bool | None = None,
        blocked: Iterable[str] | None = None,
        plugins: Iterable[object] = (),
    ) -> None:
        self._options: dict[str, Any] = {
            "builtins": builtins,
            "entry_points": entry_points,
            "blocked": tuple(blocked or ()),
            "plugins": tuple(plugins),
        }
        self._loaded: LoadedPlugins | None = None
        self._lock = threading.RLock()
        self._added_plugins: list[tuple[object, str]] = []
        self._scripted: list[tuple[str, ArchitectureSpec]] = []

    # -- discovery -------------------------------------------------------------------------
    @property
    def _state(self) -> LoadedPlugins:
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    self._loaded = self._discover(self._added_plugins)
        return self._loaded

    def _discover(self, added: list[tuple[object, str]]) -> LoadedPlugins:
        options = dict(self._options)
        options["plugins"] = (*options["plugins"], *added)
        loaded = load_plugins(**options)
        for module, spec in self._scripted:  # replay programmatic registrations
            _script_registrar(loaded, module).add_architecture(spec)
        return loaded

    def list_plugins(self) -> list[PluginReport]:
        """One report per plugin: distribution, version, what it registered, problems."""
        return list(self._state.reports.values())

    def register_plugin(self, plugin: object, *, name: str | None = None) -> PluginReport:
        """Register a plugin object (a module or instance with hook implementations).

        The catalog is rebuilt with the plugin added, so it takes part in every phase as a
        discovered plugin would (a new backbone gets its classification architecture, say).
        If the plugin has any problem, :class:`PluginError` is raised and the catalog is
        left as it was.
        """
        with self._lock:
            label = programmatic_report(plugin, name).name
            if label in self._state.reports:
                raise PluginError(
                    f"a plugin named {label!r} is already registered; pass name=... to "
                    "register this one under another name",
                    plugin=label,
                )
            added = [*self._added_plugins, (plugin, label)]
            try:
                rebuilt = self._discover(added)
            except DuplicateNameError as err:
                raise PluginError(
                    f"plugin {label!r} takes a name registered from a script: {err}", plugin=label
                ) from err
            report = rebuilt.reports[label]
            if report.errors or not report.loaded:  # a warning (slow hook) is no failure
                details = "; ".join(str(p) for p in report.errors) or "it did not load"
                raise PluginError(
                    f"plugin {label!r} was not registered, it had problems: {details}",
                    plugin=label,
                )
            self._added_plugins = added
            self._loaded = rebuilt
        return report

    def register(
        self,
        task: str,
        name: str,
        *,
        display_name: str = "",
        note: str = "",
        num_params: int | None = None,
        default_num_classes: int = 1000,
        hyperparameters: Hyperparameters | None = None,
        pretrained_available: bool = False,
        backbone: str | None = None,
        config_class: Any = None,
    ) -> Callable[[F], F]:
        """Decorator registering ``fn(config, num_classes) -> nn.Module`` as an architecture.

        A name that is already taken raises :class:`~visionatlas.errors.DuplicateNameError`.
        """

        def decorator(fn: F) -> F:
            spec = ArchitectureSpec(
                task=task,
                name=name,
                builder=fn,
                display_name=display_name,
                note=note,
                num_params=num_params,
                default_num_classes=default_num_classes,
                hyperparameters=hyperparameters or Hyperparameters(),
                pretrained_available=pretrained_available,
                backbone=backbone,
                config_class=config_class,
            )
            with self._lock:
                _script_registrar(self._state, fn.__module__).add_architecture(spec)
                self._scripted.append((fn.__module__, spec))
            return fn

        return decorator

    # -- queries ---------------------------------------------------------------------------
    def list_tasks(self) -> list[str]:
        """Task names that have a registered task spec or at least one architecture."""
        specs = self._state.specs
        names = set(specs.tasks) | {task for task, _ in specs.architectures}
        return sorted(names)

    def get_task(self, name: str) -> TaskSpec:
        """Metadata of a task (its spec, or a bare one for a task with only architectures)."""
        name = _name(name, "name", "a task", self.list_tasks)
        specs = self._state.specs
        if name in specs.tasks:
            return specs.tasks[name]
        if name in self.list_tasks():
            return TaskSpec(name=name, display_name=name)
        hint = install_hint(name)
        context = f"(its plugin is not installed: {hint})" if hint else ""
        raise UnknownTaskError(
            name, self.list_tasks(), context=context or "(no installed plugin provides it)"
        )

    def architectures(
        self, task: str | None = None, pattern: str | None = None
    ) -> list[ArchitectureSpec]:
        """Architecture specs, optionally for one task and matching a glob ``pattern``."""
        pattern = _optional_text(pattern, "pattern", "a glob pattern")
        if task is not None:
            self.get_task(_name(task, "task", "None or a task", self.list_tasks))
        specs = [
            spec
            for (spec_task, name), spec in self._state.specs.architectures.items()
            if (task is None or spec_task == task) and _matches(name, pattern)
        ]
        return sorted(specs, key=lambda s: (s.task, s.name))

    def list_architectures(self, task: str | None = None, pattern: str | None = None) -> list[str]:
        """Architecture names for ``task``; without a task, ``"task/name"`` keys of all."""
        specs = self.architectures(task, pattern)
        if task is not None:
            return [spec.name for spec in specs]
        return [f"{spec.task}/{spec.name}" for spec in specs]

    def get_architecture(self, task: str, name: str) -> ArchitectureSpec:
        """Metadata of one architecture (display name, parameters, hyperparameters, ...)."""
        return self._architecture(task, name, "name")

    def _architecture(self, task: Any, name: Any, argument: str) -> ArchitectureSpec:
        self.get_task(_name(task, "task", "a task", self.list_tasks))
        name = _name(name, argument, "an architecture", lambda: self.list_architectures(task))
        spec = self._state.specs.architectures.get((task, name))
        if spec is None:
            raise UnknownArchitectureError(
                name, self.list_architectures(task), context=f"for task {task!r}"
            )
        return spec

    def backbones(
        self, pattern: str | None = None, pretrained_only: bool = False
    ) -> list[BackboneSpec]:
        pattern = _optional_text(pattern, "pattern", "a glob pattern")
        specs = [
            spec
            for name, spec in self._state.specs.backbones.items()
            if _matches(name, pattern) and (spec.pretrained_weights or not pretrained_only)
        ]
        return sorted(specs, key=lambda s: s.name)

    def list_backbones(
        self, pattern: str | None = None, pretrained_only: bool = False
    ) -> list[str]:
        """Backbone names matching a glob ``pattern`` (e.g. ``"*resnet*"``)."""
        return [spec.name for spec in self.backbones(pattern, pretrained_only)]

    def get_backbone(self, name: str) -> BackboneSpec:
        """Metadata of a backbone: channels, feature levels, parameters, weights."""
        name = _name(name, "name", "a backbone", self._state.specs.backbones.keys)
        spec = self._state.specs.backbones.get(name)
        if spec is None:
            raise UnknownBackboneError(name, self._state.specs.backbones)
        return spec

    def list_heads(self) -> list[str]:
        return sorted(self._state.specs.heads)

    def get_head(self, name: str) -> HeadSpec:
        """Metadata of a registered head."""
        name = _name(name, "name", "a head", self._state.specs.heads.keys)
        spec = self._state.specs.heads.get(name)
        if spec is None:
            raise UnknownHeadError(name, self._state.specs.heads)
        return spec

    def list_trainable_tasks(self) -> list[str]:
        """Tasks that a plugin made trainable (``visionatlas_register_training``), sorted."""
        return sorted(self._state.specs.trainings)

    def get_training(self, task: str) -> TrainingSpec:
        """The :class:`TrainingSpec` of ``task``; :class:`UnknownTrainingError` if none."""
        self.get_task(task)  # an unknown task is reported as such
        spec = self._state.specs.trainings.get(task)
        if spec is None:
            raise UnknownTrainingError(task, self._state.specs.trainings)
        return spec

    def load_training(self, task: str) -> TaskTraining | CustomFitTraining:
        """Import and build the task's training pieces: a
        :class:`~visionatlas.training.protocol.TaskTraining` (a per-batch loss, driven by an
        engine's loop), or a :class:`~visionatlas.training.protocol.CustomFitTraining` for a
        task that trains with its own fit."""
        spec = self.get_training(task)
        builder = load_reference(spec.builder, spec.provider, f"training of task {task!r}")
        try:
            training = builder()
        except (Exception, SystemExit) as err:
            raise PluginError(
                f"the training builder of task {task!r} from {spec.provider} failed: "
                f"{describe_error(err)}",
                plugin=spec.provider.name if spec.provider else None,
            ) from err
        if isinstance(training, (TaskTraining, CustomFitTraining)):
            return training
        custom = ""
        if hasattr(training, "fit"):  # meant as a custom fit: say what that one lacks too
            custom = (
                ", and the CustomFitTraining interface (missing: "
                f"{', '.join(missing_members(training, custom_fit=True))})"
            )
        raise PluginError(
            f"the training builder of task {task!r} from {spec.provider} returned a "
            f"{type(training).__name__}, which lacks the TaskTraining interface "
            f"(missing: {', '.join(missing_members(training))}){custom}",
            plugin=spec.provider.name if spec.provider else None,
        )

    def commands(self) -> list[CommandSpec]:
        """Command-line subcommands added by plugins, sorted by name."""
        table = self._state.specs.commands
        return [table[name] for name in sorted(table)]

    def load_command(self, name: str) -> Callable[..., Any]:
        """The ``configure`` function of the plugin command ``name`` (imported now)."""
        spec = self._state.specs.commands.get(name)
        if spec is None:
            raise LookupError(f"no plugin command {name!r}")
        return load_reference(spec.configure, spec.provider, f"command {name!r} configure")

    # -- construction ----------------------------------------------------------------------
    def example_inputs(
        self, task: str, *, batch_size: int = 2, input_size: tuple[int, int] = (224, 224)
    ) -> Any:
        """A synthetic batch for ``task``: its ``example_inputs`` builder's, or images.

        Without a task-specific builder the batch is ``torch.rand(batch_size, 3, H, W)``.
        """
        spec = self.get_task(_name(task, "task", "a task", self.list_tasks))
        if spec.example_inputs is None:
            import torch

            return torch.rand(batch_size, 3, *input_size)
        make = load_reference(spec.example_inputs, spec.provider, "example_inputs")
        return make(batch_size=batch_size, input_size=input_size)

    def config_class(self, task: str, architecture: str) -> type[ModelConfig]:
        """The config class an architecture validates its config with."""
        return config_class(self._architecture(task, architecture, "architecture"))

    def make_config(
        self, task: str, architecture: str, config: ModelConfig | Mapping[str, Any] | None = None
    ) -> ModelConfig:
        """Validate ``config`` (None, a mapping or a config) against the architecture's class."""
        validated: ModelConfig = make_config(self.config_class(task, architecture), config)
        return validated

    def create_model(
        self,
        task: str,
        architecture: str,
        config: ModelConfig | Mapping[str, Any] | None = None,
        num_classes: int | None = None,
        *,
        check_inputs: bool = False,
    ) -> nn.Module:
        """Build ``architecture`` for ``task``; ``num_classes`` defaults to the architecture's.

        When the task declares an ``input_kind``, the model checks the type, shape and dtype
        of its images on every forward; ``check_inputs=True`` also checks that every pixel
        value is finite (see :mod:`visionatlas.inputs`).
        """
        spec = self._architecture(task, architecture, "architecture")
        cfg = self.make_config(task, architecture, config)
        return build_model(self, spec, cfg, num_classes, check_inputs=check_inputs)

    def create_backbone(
        self, config: str | BackboneConfig | Mapping[str, Any], **overrides: Any
    ) -> Backbone:
        """Build a backbone from its name or a :class:`BackboneConfig` (fields as overrides).

        Where ``pretrained`` or ``weights_path`` is set and the builder loaded no weights
        (``backbone.weights_source`` is ``None``), the spec's declared weights are loaded, or
        :class:`~visionatlas.errors.PretrainedWeightsError` says why they cannot be.
        """
        cfg = make_backbone_config(config, overrides)
        return build_backbone(self, self.get_backbone(cfg.model_name), cfg)

    def create_head(
        self, name: str, *, in_features: int, num_outputs: int, dropout: float = 0.0
    ) -> nn.Module:
        """Build a registered head."""
        spec = self.get_head(name)
        builder = load_reference(spec.builder, spec.provider, "head builder")
        head: nn.Module = builder(in_features=in_features, num_outputs=num_outputs, dropout=dropout)
        return head


def _script_registrar(state: LoadedPlugins, module: str) -> Registrar:
    """A strict registrar for registrations made from ``module`` with :meth:`register`."""
    label = f"script:{module}"
    report = state.reports.get(label)
    if report is None:
        report = PluginReport(name=label, module=module, loaded=True)
        state.reports[label] = report
    return Registrar(state.specs, report, strict=True)


# The process-wide catalog; at the end because it needs Catalog.
from visionatlas.process_catalog import (  # noqa: E402
    current_catalog,
    get_catalog,
    set_catalog,
    use_catalog,
)
