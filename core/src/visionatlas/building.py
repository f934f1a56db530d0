"""Model and backbone construction from catalog specs; what :class:`Catalog` builds with.

Importing this module is cheap: torch and pydantic are imported when something is built.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from visionatlas.errors import InvalidArgumentError, PluginError, PretrainedWeightsError
from visionatlas.plugins.lazy import resolve
from visionatlas.plugins.reports import describe_error
from visionatlas.specs import ArchitectureSpec, BackboneSpec, PluginRef

if TYPE_CHECKING:
    from torch import nn

    from visionatlas.catalog import Catalog
    from visionatlas.config import BackboneConfig, ModelConfig
    from visionatlas.models.backbones.base import Backbone

__all__ = [
    "BUILDING",
    "BuildInfo",
    "build_backbone",
    "build_model",
    "building",
    "config_class",
    "load_reference",
    "make_backbone_config",
    "make_config",
]

BUILDING: contextvars.ContextVar[Catalog | None] = contextvars.ContextVar(
    "visionatlas_building", default=None
)
"""The catalog whose builder is running (``current_catalog()`` reads it)."""


@dataclass(frozen=True)
class BuildInfo:
    """How a model was built; attached to models as ``model.visionatlas_info``."""

    task: str
    architecture: str
    config: dict[str, Any]
    num_classes: int
    plugin: str | None
    distribution: str | None
    version: str | None


@contextmanager
def building(catalog: Catalog) -> Iterator[None]:
    """Make ``catalog`` the one builders see through ``current_catalog()``."""
    token = BUILDING.set(catalog)
    try:
        yield
    finally:
        BUILDING.reset(token)


def load_reference(reference: Any, provider: PluginRef | None, what: str) -> Any:
    """Resolve a builder or class reference; any failure is a :class:`PluginError`."""
    try:
        return resolve(reference)
    except (Exception, SystemExit) as err:  # sys.exit() in a plugin module is a failure too
        raise PluginError(
            f"cannot load the {what} {reference!r} of {provider or 'an unknown plugin'}: "
            f"{describe_error(err)}",
            plugin=provider.name if provider else None,
        ) from err


def config_class(spec: ArchitectureSpec) -> type[ModelConfig]:
    """The config class ``spec`` validates its config with (``ModelConfig`` if none)."""
    from visionatlas.config import ModelConfig

    if spec.config_class is None:
        return ModelConfig
    cls = load_reference(spec.config_class, spec.provider, "config class")
    if not (isinstance(cls, type) and issubclass(cls, ModelConfig)):
        raise PluginError(
            f"{spec.provider} declares config_class {spec.config_class!r} for "
            f"{spec.task}/{spec.name}, which is not a ModelConfig subclass",
            plugin=spec.provider.name if spec.provider else None,
        )
    return cls


def make_config(cls: type[ModelConfig], config: ModelConfig | Mapping[str, Any] | None) -> Any:
    """Validate ``config`` (None, a mapping or a config) as a ``cls``."""
    from visionatlas.config import ModelConfig

    if config is None:
        return cls()
    if isinstance(config, cls):
        return config
    if isinstance(config, ModelConfig):
        return cls.model_validate(config.model_dump(exclude_unset=True))
    if isinstance(config, Mapping):
        return cls.model_validate(dict(config))
    raise InvalidArgumentError("config", config, f"None, a mapping or a {cls.__name__}")


def build_model(
    catalog: Catalog,
    spec: ArchitectureSpec,
    config: ModelConfig,
    num_classes: int | None,
    *,
    check_inputs: bool = False,
) -> nn.Module:
    """Call ``spec``'s builder, check what it returns, attach build info and input checks."""
    from torch import nn

    from visionatlas.config import validate_num_classes

    classes = validate_num_classes(spec.default_num_classes if num_classes is None else num_classes)
    builder = load_reference(spec.builder, spec.provider, "builder")
    with building(catalog):
        model = builder(config, classes)
    provider = spec.provider or PluginRef(name="unknown")
    if not isinstance(model, nn.Module):
        raise PluginError(
            f"the builder of {spec.task}/{spec.name} from {provider} returned a "
            f"{type(model).__name__}, not a torch.nn.Module",
            plugin=provider.name,
        )
    info = BuildInfo(
        task=spec.task,
        architecture=spec.name,
        config=config.model_dump(mode="json"),
        num_classes=classes,
        plugin=provider.name,
        distribution=provider.distribution,
        version=provider.version,
    )
    object.__setattr__(model, "visionatlas_info", info)  # a plain attribute, not state
    kind = catalog.get_task(spec.task).input_kind
    if kind is not None:
        from visionatlas.inputs import install_input_check

        label = f"{spec.task}/{spec.name}"
        install_input_check(model, kind, values=bool(check_inputs), label=label)
    return model


def make_backbone_config(
    config: str | BackboneConfig | Mapping[str, Any], overrides: Mapping[str, Any]
) -> BackboneConfig:
    """A validated :class:`BackboneConfig` from a name, a config or a mapping, plus overrides."""
    from visionatlas.config import BackboneConfig

    if isinstance(config, str):
        return BackboneConfig(model_name=config, **overrides)
    if isinstance(config, BackboneConfig):
        if not overrides:
            return config
        return BackboneConfig.model_validate({**config.model_dump(), **overrides})
    if isinstance(config, Mapping):
        return BackboneConfig.model_validate({**config, **overrides})
    raise InvalidArgumentError(
        "config", config, "a backbone name (a str), a BackboneConfig or a mapping"
    )


def build_backbone(catalog: Catalog, spec: BackboneSpec, config: BackboneConfig) -> Backbone:
    """Call ``spec``'s builder; load the declared weights where the builder loaded none.

    When weights are asked for, the builder runs under
    :func:`~visionatlas.models.deferred_init.construct_and_load`, so the parameters that the
    weights replace are never randomly initialised.
    """
    builder = load_reference(spec.builder, spec.provider, "backbone builder")

    def construct() -> Backbone:
        with building(catalog):
            built: Backbone = builder(config)
        return built

    if not (config.pretrained or config.weights_path is not None):
        return construct()

    def load(backbone: Backbone) -> None:
        if backbone.weights_source is None:
            _load_declared_weights(backbone, spec, config)

    from visionatlas.models.deferred_init import construct_and_load

    return construct_and_load(construct, load)


def _load_declared_weights(backbone: Backbone, spec: BackboneSpec, cfg: BackboneConfig) -> None:
    """Honour ``pretrained``/``weights_path`` where the builder did not load weights itself."""
    from visionatlas.models.backbones.weights import load_backbone_weights

    if spec.pretrained_weights is None and cfg.weights_path is None:
        provider = spec.provider.name if spec.provider else "unknown"
        raise PretrainedWeightsError(
            f"backbone {spec.name!r} (plugin {provider!r}) declares no pretrained weights and its "
            "builder loaded none, so pretrained=True cannot be honoured; pass a local weights "
            "file with weights_path, or build it with pretrained=False. A plugin declares "
            "weights with BackboneSpec(pretrained_weights=WeightsSpec(url=..., sha256=...))"
        )
    load_backbone_weights(backbone, spec.pretrained_weights, cfg)
