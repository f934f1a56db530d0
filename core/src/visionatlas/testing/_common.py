"""What every check shares: the failure type, building through the catalog, short lists.

Imports neither torch nor pydantic at module level (see :mod:`visionatlas.testing`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from visionatlas.catalog import Catalog

if TYPE_CHECKING:
    from torch import nn

    from visionatlas.config import ModelConfig

__all__ = ["CheckFailed", "build_model", "call", "describe_config", "few", "with_options"]


class CheckFailed(AssertionError):
    """A plugin, backbone or architecture does not meet the visionatlas plugin contract."""


def call(label: str, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)``; any exception but :class:`CheckFailed` becomes one."""
    try:
        return function(*args, **kwargs)
    except CheckFailed:
        raise
    except Exception as err:
        raise CheckFailed(f"{label}: {what} failed: {type(err).__name__}: {err}") from err


def describe_config(config: ModelConfig | Mapping[str, Any] | None) -> str:
    """The config as a short dict for messages (only the fields that were set)."""
    if config is None:
        return "{}"
    if isinstance(config, Mapping):
        return str(dict(config))
    return str(config.model_dump(exclude_unset=True))


def with_options(
    config: ModelConfig | Mapping[str, Any] | None, **options: Any
) -> ModelConfig | Mapping[str, Any]:
    """``config`` with ``options`` set on top, keeping a ``ModelConfig`` subclass's type."""
    if config is None:
        return dict(options)
    if isinstance(config, Mapping):
        return {**config, **options}
    return config.model_validate({**config.model_dump(exclude_unset=True), **options})


def build_model(
    catalog: Catalog,
    task: str,
    name: str,
    config: ModelConfig | Mapping[str, Any] | None,
    num_classes: int | None,
    *,
    meta: bool = False,
) -> nn.Module:
    """``catalog.create_model(...)``, failing with :class:`CheckFailed` when it raises.

    With ``meta=True`` the model is built on the meta device (no memory, no weight
    initialization), for checks that only look at parameter shapes and flags; a builder
    that cannot build there is built normally instead.
    """
    if meta:
        model = _build_on_meta(catalog, task, name, config, num_classes)
        if model is not None:
            return model
    try:
        return catalog.create_model(task, name, config, num_classes)
    except Exception as err:
        raise CheckFailed(
            f"cannot build {task}/{name} with config={describe_config(config)} and "
            f"num_classes={num_classes}: {type(err).__name__}: {err}"
        ) from err


def _build_on_meta(
    catalog: Catalog,
    task: str,
    name: str,
    config: ModelConfig | Mapping[str, Any] | None,
    num_classes: int | None,
) -> nn.Module | None:
    import torch
    from torch.nn.parameter import UninitializedParameter

    try:
        with torch.device("meta"):
            model = catalog.create_model(task, name, config, num_classes)
    except Exception:
        return None  # a builder that computes with real tensors: build it normally
    if any(isinstance(p, UninitializedParameter) for p in model.parameters()):
        return None  # lazy modules have no parameter count before a forward pass
    return model


def few(names: Sequence[str], limit: int = 5) -> str:
    """At most ``limit`` names, then how many more there are."""
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
