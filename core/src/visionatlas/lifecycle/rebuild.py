"""Rebuild a model from its recorded build info, for the model registry and checkpoints.

A model made by :func:`~visionatlas.create_model` or :func:`~visionatlas.compose_model`
carries ``model.visionatlas_info`` (a :class:`~visionatlas.BuildInfo`). Stored with its
weights, that is enough to build the same architecture again through the catalog and load
the weights into it. Rebuilding never downloads or reads pretrained weights: the stored
weights replace them anyway.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from visionatlas.catalog import BuildInfo, Catalog, get_catalog
from visionatlas.errors import UnknownNameError, VisionAtlasError

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "MissingPluginError",
    "Requirement",
    "build_info_from_dict",
    "build_info_of",
    "build_info_to_dict",
    "rebuild_model",
    "requirements",
    "without_pretrained",
]

_INFO_FIELDS = tuple(f.name for f in dataclasses.fields(BuildInfo))


@dataclasses.dataclass(frozen=True)
class Requirement:
    """A registered name a stored model needs, and who provided it when it was stored."""

    kind: str
    name: str
    plugin: str | None
    distribution: str | None
    version: str | None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Requirement:
        def text(key: str) -> str | None:
            value = data.get(key)
            return None if value is None else str(value)

        return cls(
            kind=str(data.get("kind", "")),
            name=str(data.get("name", "")),
            plugin=text("plugin"),
            distribution=text("distribution"),
            version=text("version"),
        )

    def install_hint(self) -> str:
        if self.distribution is None:
            return (
                f"it came from plugin {self.plugin!r}, which has no distribution: register "
                "that plugin (or script) before loading"
            )
        pin = f"=={self.version}" if self.version else ""
        return (
            f"it came from plugin {self.plugin!r} of distribution {self.distribution} "
            f"{self.version or ''}".rstrip()
            + f"; install it, e.g. pip install '{self.distribution}{pin}'"
        )


class MissingPluginError(VisionAtlasError, LookupError):
    """A stored model needs a task, architecture, backbone or head that is not installed."""

    def __init__(self, message: str, *, requirement: Requirement | None = None) -> None:
        self.requirement = requirement
        super().__init__(message)

    def __str__(self) -> str:  # not KeyError-style quoting
        return str(self.args[0])


def build_info_of(model: Any) -> BuildInfo | None:
    """``model.visionatlas_info`` if it is a :class:`BuildInfo`, else ``None``."""
    info = getattr(model, "visionatlas_info", None)
    return info if isinstance(info, BuildInfo) else None


def build_info_to_dict(info: BuildInfo) -> dict[str, Any]:
    return dataclasses.asdict(info)


def build_info_from_dict(data: Any) -> BuildInfo:
    """A :class:`BuildInfo` from its dict; ``ValueError`` naming what is missing or wrong."""
    if not isinstance(data, Mapping):
        raise ValueError(f"build info must be a mapping, got {type(data).__name__}")
    missing = [name for name in ("task", "architecture", "num_classes") if name not in data]
    unknown = sorted(set(data) - set(_INFO_FIELDS))
    if missing or unknown:
        raise ValueError(
            "build info needs task, architecture and num_classes (optionally config, plugin, "
            f"distribution, version); missing: {missing or 'none'}, unknown: {unknown or 'none'}"
        )
    config = data.get("config") or {}
    if not isinstance(config, Mapping):
        raise ValueError(f"build info config must be a mapping, got {type(config).__name__}")
    num_classes = data["num_classes"]
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"build info num_classes must be an int >= 1, got {num_classes!r}")
    return BuildInfo(
        task=str(data["task"]),
        architecture=str(data["architecture"]),
        config=dict(config),
        num_classes=num_classes,
        plugin=data.get("plugin"),
        distribution=data.get("distribution"),
        version=data.get("version"),
    )


def without_pretrained(config: Any) -> Any:
    """``config`` with every ``pretrained*`` flag off and every ``weights_path`` cleared."""
    if isinstance(config, Mapping):
        cleaned: dict[str, Any] = {}
        for key, value in config.items():
            if key == "pretrained" and not isinstance(value, (bool, type(None))):
                raise ValueError(  # never let a coercible string reach a builder
                    f"stored config field 'pretrained' is {value!r}; expected true or false"
                )
            if isinstance(value, bool) and (key == "pretrained" or key.startswith("pretrained_")):
                cleaned[key] = False
            elif key == "weights_path":
                cleaned[key] = None
            else:
                cleaned[key] = without_pretrained(value)
        return cleaned
    if isinstance(config, list):
        return [without_pretrained(v) for v in config]
    return config


def requirements(info: BuildInfo, catalog: Catalog | None = None) -> list[Requirement]:
    """What rebuilding ``info`` needs from the catalog, with the current providers.

    The architecture (or, for a composition, the backbone and head), and the backbone and
    head it names that the catalog holds; their providers go into install hints later.
    """
    from visionatlas.models.composition import is_composed

    catalog = catalog or get_catalog()
    needs: list[Requirement] = []
    if is_composed(info):
        backbone = info.config.get("backbone") or {}
        names = [("backbone", backbone.get("model_name")), ("head", info.config.get("head"))]
    else:
        needs.append(
            Requirement(
                "architecture",
                f"{info.task}/{info.architecture}",
                info.plugin,
                info.distribution,
                info.version,
            )
        )
        backbone = info.config.get("backbone")
        if isinstance(backbone, Mapping):
            backbone = backbone.get("model_name")
        names = [("backbone", backbone), ("head", info.config.get("head"))]
        if not isinstance(backbone, str):
            try:
                names[0] = (
                    "backbone",
                    catalog.get_architecture(info.task, info.architecture).backbone,
                )
            except UnknownNameError:
                names[0] = ("backbone", None)
    for kind, name in names:
        if not isinstance(name, str):
            continue
        try:
            spec = catalog.get_backbone(name) if kind == "backbone" else catalog.get_head(name)
        except UnknownNameError:  # not from the catalog (e.g. built by the architecture itself)
            continue
        provider = spec.provider
        needs.append(
            Requirement(
                kind,
                name,
                provider.name if provider else None,
                provider.distribution if provider else None,
                provider.version if provider else None,
            )
        )
    return needs


def _check_available(
    info: BuildInfo, needs: Sequence[Requirement], catalog: Catalog, what: str
) -> None:
    from visionatlas.models.composition import is_composed

    checks: list[Requirement] = list(needs)
    if not is_composed(info) and not any(r.kind == "architecture" for r in checks):
        checks.insert(
            0,
            Requirement(
                "architecture",
                f"{info.task}/{info.architecture}",
                info.plugin,
                info.distribution,
                info.version,
            ),
        )
    for req in checks:
        try:
            if req.kind == "architecture":
                task, _, name = req.name.partition("/")
                catalog.get_architecture(task, name)
            elif req.kind == "backbone":
                catalog.get_backbone(req.name)
            elif req.kind == "head":
                catalog.get_head(req.name)
        except UnknownNameError as err:
            raise MissingPluginError(
                f"{what} needs {req.kind} {req.name!r}, which no installed plugin provides; "
                f"{req.install_hint()}{_plugin_state(req, catalog)}",
                requirement=req,
            ) from err


def _plugin_state(req: Requirement, catalog: Catalog) -> str:
    """Why an installed distribution does not provide the name (blocked, failed...)."""
    for report in catalog.list_plugins():
        if req.distribution is None or report.distribution != req.distribution:
            continue
        if report.status == "ok":
            return f" ({req.distribution} {report.version} is installed but does not provide it)"
        problems = "; ".join(str(p) for p in report.problems)
        return (
            f" ({req.distribution} {report.version} is installed but {report.status}"
            + (f": {problems}" if problems else "")
            + ")"
        )
    return ""


def rebuild_model(
    info: BuildInfo,
    *,
    needs: Sequence[Requirement] = (),
    catalog: Catalog | None = None,
    what: str = "this model",
) -> nn.Module:
    """Build a fresh model (random weights) of the architecture and shape in ``info``.

    ``needs`` are the requirements stored with the model (for the install hint when a
    plugin is missing); ``what`` names the model in error messages.
    """
    from visionatlas.models.composition import CompositionConfig, build_composition, is_composed

    catalog = catalog or get_catalog()
    _check_available(info, needs, catalog, what)
    config = without_pretrained(info.config)
    if is_composed(info):
        composition = CompositionConfig.model_validate(config)
        return build_composition(composition, info.num_classes, task=info.task, catalog=catalog)
    return catalog.create_model(info.task, info.architecture, config, info.num_classes)
