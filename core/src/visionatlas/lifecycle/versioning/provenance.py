"""What the registry records about how a model was built, checked before it is stored.

An entry is only useful if :meth:`~visionatlas.lifecycle.versioning.store.ModelRegistry.load`
can rebuild its architecture and load the weights back: the build info comes from the
model itself (or an explicit ``config``), and the recorded architecture is rebuilt on the
meta device to compare parameter names and shapes before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from visionatlas.catalog import BuildInfo, Catalog
from visionatlas.errors import VisionAtlasError
from visionatlas.lifecycle.rebuild import (
    Requirement,
    build_info_from_dict,
    build_info_of,
    rebuild_model,
)
from visionatlas.lifecycle.versioning.errors import RegistryError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["check_rebuildable", "library_versions", "recorded_build_info"]


def recorded_build_info(model: nn.Module, config: Any, catalog: Catalog) -> BuildInfo:
    """How ``model`` is rebuilt: its own build info, or what ``config`` says.

    ``config`` may be a :class:`BuildInfo`, a mapping with ``task`` and ``architecture``,
    or (for a catalog model) the config it was built with, which must then match.
    """
    info = build_info_of(model)
    if isinstance(config, BuildInfo):
        return config
    if isinstance(config, Mapping) and "architecture" in config and "task" in config:
        return build_info_from_dict(config)
    if info is None:
        raise RegistryError(
            f"the {type(model).__name__} does not say how it was built (no "
            "visionatlas_info): build it with visionatlas.create_model or "
            "visionatlas.compose_model, or pass config={'task': ..., 'architecture': ..., "
            "'num_classes': ..., 'config': {...}}"
        )
    if config is not None:
        from visionatlas.models.composition import is_composed

        if is_composed(info):
            raise RegistryError("a composed model records its own composition; leave config unset")
        given = catalog.make_config(info.task, info.architecture, config)
        built = catalog.make_config(info.task, info.architecture, info.config)
        if given != built:
            raise RegistryError(
                f"config= differs from the config {info.task}/{info.architecture} was "
                f"built with ({built.model_dump(mode='json')}); the registry rebuilds "
                "from the model's own build info, so leave config unset"
            )
    return info


def check_rebuildable(
    info: BuildInfo,
    needs: Iterable[Requirement],
    model: nn.Module,
    what: str,
    catalog: Catalog,
) -> None:
    """Build the recorded architecture on the meta device; compare names and shapes."""
    import torch

    def rebuild() -> nn.Module:
        return rebuild_model(info, needs=list(needs), catalog=catalog, what=what)

    try:
        with torch.device("meta"):  # no memory, no initialization cost
            rebuilt = rebuild()
    except (NotImplementedError, RuntimeError, ValueError) as err:
        if isinstance(err, VisionAtlasError):
            raise
        rebuilt = rebuild()  # a builder that needs real tensors
    expected = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if expected == actual:
        return
    missing = sorted(set(expected) - set(actual))[:5]
    unexpected = sorted(set(actual) - set(expected))[:5]
    shapes = [
        f"{k}: {actual[k]} vs {expected[k]}"
        for k in sorted(set(actual) & set(expected))
        if actual[k] != expected[k]
    ][:5]
    raise RegistryError(
        f"{what} would not load back: rebuilding {info.task}/{info.architecture} with "
        f"num_classes={info.num_classes} gives other parameters (missing: {missing}, "
        f"unexpected: {unexpected}, shapes model vs rebuilt: {shapes}). Was the model "
        "changed after it was built? reset_head() keeps the build info up to date."
    )


def library_versions(info: BuildInfo) -> dict[str, str]:
    """The visionatlas, torch and providing distribution's versions, as recorded."""
    import torch

    from visionatlas import __version__

    versions = {"visionatlas": __version__, "torch": str(torch.__version__)}
    if info.distribution and info.version:
        versions[info.distribution] = info.version
    return versions
