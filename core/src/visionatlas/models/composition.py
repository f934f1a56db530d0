"""Models composed of a registered backbone and a registered head.

Task plugins build their architectures with :func:`build_on_backbone`; users join any
backbone with any head by name with :func:`compose_model`, without writing a plugin.

A head consumes either the backbone's pooled pre-logits vector ``(N, pre_logits_dim)``
(the default) or, when its class declares ``input_kind = "feature_map"``, the backbone's
final feature map ``(N, out_channels, H, W)`` (pooling heads such as ``gem``).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from visionatlas.catalog import BuildInfo, Catalog, current_catalog
from visionatlas.config import BackboneConfig, ModelConfig, validate_num_classes
from visionatlas.errors import IncompatibleBackboneError, PluginError
from visionatlas.models.backbones.base import Backbone
from visionatlas.plugins.lazy import resolve

__all__ = [
    "COMPOSITION_PLUGIN",
    "BackboneHeadModel",
    "CompositionConfig",
    "HeadInput",
    "build_composition",
    "build_on_backbone",
    "compose",
    "compose_model",
    "head_input_kind",
    "is_composed",
]

HeadInput = Literal["pooled", "feature_map"]

COMPOSITION_PLUGIN = "composition"
"""``BuildInfo.plugin`` of models made by :func:`compose_model` (distribution ``visionatlas``)."""

_SET_BY_COMPOSITION = frozenset({"in_features", "num_outputs", "dropout"})


def head_input_kind(builder: Any) -> HeadInput:
    """What a head builder consumes: its ``input_kind`` attribute, ``"pooled"`` if unset."""
    kind = getattr(builder, "input_kind", "pooled")
    if kind not in ("pooled", "feature_map"):
        raise PluginError(
            f"head builder {builder!r} declares input_kind={kind!r}; accepted: "
            "'pooled' (the pre-logits vector) or 'feature_map' (the final feature map)"
        )
    return "feature_map" if kind == "feature_map" else "pooled"


class BackboneHeadModel(nn.Module):
    """``head(backbone.forward_pre_logits(x))``, or ``head(backbone(x))`` for map heads.

    The shape of classifiers and regressors; ``head_input`` says which of the two the head
    consumes.
    """

    def __init__(
        self,
        backbone: Backbone,
        head: nn.Module,
        *,
        head_name: str | None = None,
        head_input: HeadInput = "pooled",
        head_options: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.head_name = head_name
        self.head_input: HeadInput = head_input
        self.head_options: dict[str, Any] = dict(head_options or {})

    def forward(self, x: Tensor) -> Tensor:
        if self.head_input == "feature_map":
            return self.head(self.backbone(x))
        return self.head(self.backbone.forward_pre_logits(x))

    def forward_features(self, x: Tensor) -> Tensor:
        """The backbone's final feature map."""
        return self.backbone(x)

    def freeze_backbone(self, trainable_stages: int = 0) -> None:
        """Freeze the backbone (all but its last ``trainable_stages`` stages)."""
        self.backbone.freeze(trainable_stages)

    def unfreeze_backbone(self) -> None:
        self.backbone.unfreeze()

    def reset_head(
        self,
        num_outputs: int,
        *,
        head: str | None = None,
        dropout: float | None = None,
        head_options: Mapping[str, Any] | None = None,
    ) -> None:
        """Replace the head with a fresh one of ``num_outputs`` outputs (e.g. new classes).

        ``head`` picks another registered head; ``head_options`` are its extra keyword
        arguments (kept when the head stays the same). ``model.visionatlas_info`` is
        updated (outputs, head, dropout, options), so the model registry and checkpoints
        rebuild the new shape.
        """
        name = head or self.head_name
        if name is None:
            raise ValueError("this model does not know its head's name; pass head=...")
        if head_options is not None:
            options = dict(head_options)
        else:
            options = self.head_options if name == self.head_name else {}
        info = getattr(self, "visionatlas_info", None)
        if isinstance(info, BuildInfo) and options and "head_options" not in info.config:
            raise ValueError(
                f"{info.task}/{info.architecture} records no head options in its config, so "
                "a model with them could not be rebuilt; build one with "
                "visionatlas.compose_model(..., head_options=...) instead"
            )
        current = getattr(self.head, "dropout", None)
        rate = dropout if dropout is not None else float(getattr(current, "p", 0.0))
        module, kind = _create_head(
            current_catalog(), name, self.backbone, num_outputs, rate, options
        )
        self.head, self.head_name, self.head_input, self.head_options = module, name, kind, options
        if isinstance(info, BuildInfo):
            object.__setattr__(
                self,
                "visionatlas_info",
                _reset_info(info, name, num_outputs, dropout, options, head_changed=bool(head)),
            )


def _reset_info(
    info: BuildInfo,
    head: str,
    num_outputs: int,
    dropout: float | None,
    options: dict[str, Any],
    *,
    head_changed: bool,
) -> BuildInfo:
    config = dict(info.config)
    if head_changed and "head" in config:
        config["head"] = head
    if dropout is not None and "dropout" in config:
        config["dropout"] = dropout
    if "head_options" in config:
        config["head_options"] = options
    if config.get("num_outputs") is not None:  # e.g. regression's num_outputs
        config["num_outputs"] = num_outputs
    architecture = info.architecture
    if is_composed(info):
        backbone = config.get("backbone", {})
        architecture = f"{backbone.get('model_name', '?')}+{head}"
    return dataclasses.replace(
        info, architecture=architecture, config=config, num_classes=num_outputs
    )


def _create_head(
    catalog: Catalog,
    name: str,
    backbone: Backbone,
    num_outputs: int,
    dropout: float,
    options: Mapping[str, Any],
) -> tuple[nn.Module, HeadInput]:
    """Build head ``name`` for ``backbone``, sized for what the head consumes."""
    spec = catalog.get_head(name)
    try:
        builder = resolve(spec.builder)
    except Exception as err:
        raise PluginError(
            f"cannot load the head builder {spec.builder!r} of {spec.provider}: "
            f"{type(err).__name__}: {err}",
            plugin=spec.provider.name if spec.provider else None,
        ) from err
    kind = head_input_kind(builder)
    in_features = backbone.out_channels if kind == "feature_map" else backbone.pre_logits_dim
    if not options:
        module = catalog.create_head(
            name, in_features=in_features, num_outputs=num_outputs, dropout=dropout
        )
        return module, kind
    _check_head_options(name, builder, options)
    head: nn.Module = builder(
        in_features=in_features, num_outputs=num_outputs, dropout=dropout, **options
    )
    return head, kind


def _check_head_options(name: str, builder: Any, options: Mapping[str, Any]) -> None:
    reserved = sorted(_SET_BY_COMPOSITION & set(options))
    if reserved:
        raise ValueError(
            f"head option(s) {', '.join(reserved)} of head {name!r} are set by the "
            "composition (from the backbone, num_outputs and dropout); remove them"
        )
    try:
        parameters = inspect.signature(builder).parameters
    except (TypeError, ValueError):  # no signature to check: let the call decide
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    accepted = sorted(
        p.name
        for p in parameters.values()
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        and p.name not in _SET_BY_COMPOSITION
    )
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"head {name!r} has no option(s) {', '.join(map(repr, unknown))}; "
            f"it accepts: {', '.join(accepted) or 'none'}"
        )


def compose(
    backbone: BackboneConfig,
    *,
    head: str,
    num_outputs: int,
    dropout: float | None = None,
    freeze_backbone: bool = False,
    adopt_pretrained_classifier: bool = False,
    head_options: Mapping[str, Any] | None = None,
    catalog: Catalog | None = None,
) -> BackboneHeadModel:
    """Build ``backbone`` and ``head`` from the catalog and join them.

    ``dropout=None`` takes the backbone family's default rate. With
    ``adopt_pretrained_classifier``, a head whose final layer has the shape of the
    checkpoint's classifier (e.g. 1000 ImageNet classes) gets those weights too.
    ``head_options`` are extra keyword arguments of the head's builder (checked against
    its signature). ``catalog`` defaults to the one building the model (or the
    process-wide one).
    """
    catalog = catalog or current_catalog()
    spec = catalog.get_backbone(backbone.model_name)
    catalog.get_head(head)  # an unknown head fails before the backbone is built
    trunk = catalog.create_backbone(backbone)
    rate = spec.default_drop_rate if dropout is None else dropout
    options = dict(head_options or {})
    module, kind = _create_head(catalog, head, trunk, num_outputs, rate, options)
    state = trunk.pretrained_classifier_state
    trunk.pretrained_classifier_state = None
    if adopt_pretrained_classifier and state is not None:
        _adopt(module, state)
    model = BackboneHeadModel(trunk, module, head_name=head, head_input=kind, head_options=options)
    if freeze_backbone:
        model.freeze_backbone()
    return model


def build_on_backbone(
    config: ModelConfig,
    *,
    task: str,
    backbone: str,
    head: str,
    num_outputs: int,
    adopt_pretrained_classifier: bool = False,
) -> BackboneHeadModel:
    """Build the architecture named after ``backbone`` from a validated model config.

    The config may leave the backbone unset or name the same one (as a string or a
    :class:`BackboneConfig` with more options); another backbone is refused.
    """
    backbone_config = config.backbone_config(default=backbone)
    if backbone_config.model_name != backbone:
        raise IncompatibleBackboneError(
            f"{task} architecture {backbone!r} is built on backbone {backbone!r}, but the "
            f"config asks for backbone {backbone_config.model_name!r}; use "
            f"create_model({task!r}, {backbone_config.model_name!r}) instead"
        )
    return compose(
        backbone_config,
        head=config.head or head,
        num_outputs=num_outputs,
        dropout=config.dropout,
        freeze_backbone=config.freeze_backbone,
        adopt_pretrained_classifier=adopt_pretrained_classifier,
    )


def _adopt(head: nn.Module, state: dict[str, Any]) -> None:
    linear = getattr(head, "fc", None)
    weight = state.get("weight")
    if not isinstance(linear, nn.Linear) or not isinstance(weight, torch.Tensor):
        return
    if tuple(weight.shape) == tuple(linear.weight.shape):
        linear.load_state_dict(state)


# -- user-facing composition -------------------------------------------------------------------
class CompositionConfig(BaseModel):
    """How :func:`compose_model` built a model; recorded in its ``visionatlas_info``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backbone: BackboneConfig = Field(description="The backbone and its options")
    head: str = Field(default="linear", min_length=1, description="A registered head name")
    head_options: dict[str, Any] = Field(
        default_factory=dict, description="Extra keyword arguments of the head's builder"
    )
    dropout: float | None = Field(
        default=None,
        ge=0.0,
        lt=1.0,
        strict=True,
        description="Dropout before the head's final layer; default: the backbone family's",
    )
    freeze_backbone: bool = Field(default=False, strict=True, description="Train only the head")


def is_composed(info: BuildInfo) -> bool:
    """Whether ``info`` describes a model made by :func:`compose_model`."""
    return info.plugin == COMPOSITION_PLUGIN and info.distribution == "visionatlas"


def compose_model(
    backbone: str | BackboneConfig | Mapping[str, Any],
    head: str = "linear",
    *,
    num_outputs: int,
    task: str = "custom",
    head_options: Mapping[str, Any] | None = None,
    dropout: float | None = None,
    freeze_backbone: bool = False,
    pretrained: bool = False,
) -> BackboneHeadModel:
    """Join any registered backbone with any registered head, by name.

    ``backbone`` is a backbone name, a :class:`BackboneConfig` or a mapping of its fields;
    ``pretrained`` applies to a backbone given by name. ``head_options`` are the head's
    extra arguments, e.g. ``{"hidden_features": [256]}`` for ``mlp``. ``task`` is a label
    recorded in the build info (``"custom"`` by default). The model's
    ``visionatlas_info`` records the composition, so the model registry and checkpoints
    rebuild it without a plugin.
    """
    if isinstance(backbone, str):
        backbone_config = BackboneConfig(model_name=backbone, pretrained=pretrained)
    else:
        backbone_config = (
            backbone
            if isinstance(backbone, BackboneConfig)
            else BackboneConfig.model_validate(dict(backbone))
        )
        if pretrained and not backbone_config.pretrained:
            raise ValueError(
                "pretrained=True conflicts with the backbone config's pretrained=False; "
                "set it once, on the backbone config"
            )
    config = CompositionConfig(
        backbone=backbone_config,
        head=head,
        head_options=dict(head_options or {}),
        dropout=dropout,
        freeze_backbone=freeze_backbone,
    )
    return build_composition(config, validate_num_classes(num_outputs), task=task)


def build_composition(
    config: CompositionConfig, num_outputs: int, *, task: str, catalog: Catalog | None = None
) -> BackboneHeadModel:
    """Build a validated composition and attach its build info."""
    from visionatlas import __version__

    model = compose(
        config.backbone,
        head=config.head,
        num_outputs=num_outputs,
        dropout=config.dropout,
        freeze_backbone=config.freeze_backbone,
        head_options=config.head_options,
        catalog=catalog,
    )
    info = BuildInfo(
        task=task,
        architecture=f"{config.backbone.model_name}+{config.head}",
        config=config.model_dump(mode="json"),
        num_classes=num_outputs,
        plugin=COMPOSITION_PLUGIN,
        distribution="visionatlas",
        version=__version__,
    )
    object.__setattr__(model, "visionatlas_info", info)
    return model
