"""timm models behind the visionatlas backbone interface (imports torch and timm)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from visionatlas.config import BackboneConfig
from visionatlas.models.backbones.base import Backbone
from visionatlas.specs import FeatureLevel
from visionatlas_timm.naming import timm_name
from visionatlas_timm.weights import create_with_weights

__all__ = ["TimmBackbone", "build_timm_backbone", "stage_groups"]


class _Group(nn.Module):
    """Modules and loose parameters of one stage, for freezing (not registered anywhere)."""

    members: list[nn.Module]
    loose: list[nn.Parameter]

    def __init__(self, modules: Sequence[nn.Module], parameters: Sequence[nn.Parameter]) -> None:
        super().__init__()
        object.__setattr__(self, "members", list(modules))
        object.__setattr__(self, "loose", list(parameters))

    def requires_grad_(self, requires_grad: bool = True) -> _Group:
        for module in self.members:
            module.requires_grad_(requires_grad)
        for parameter in self.loose:
            parameter.requires_grad_(requires_grad)
        return self

    def parameters(self, recurse: bool = True) -> Any:  # the members' parameters
        for module in self.members:
            yield from module.parameters(recurse)
        yield from self.loose


def stage_groups(
    model: nn.Module, level_modules: Sequence[str], stem_end: str | None = None
) -> tuple[list[_Group], _Group]:
    """Split ``model`` into the stem, one group per feature level, and the rest.

    ``level_modules`` are the modules whose outputs are the levels; level ``k`` is every
    module after level ``k - 1``'s up to and including its own, in definition order. The
    stem ends after ``stem_end`` (a stride-2 feature such as ResNet's ``act1``), else just
    before the first level's container (a ViT's ``blocks.0``). The rest is what follows the
    last level (final norm, head). Parameters held directly by a split container (a ViT's
    ``cls_token``) go to the stem.
    """
    paths = [*level_modules, *([stem_end] if stem_end else [])]
    ancestors = {p.rsplit(".", k)[0] for p in paths for k in range(1, p.count(".") + 1)}
    units: list[tuple[str, nn.Module]] = []
    loose: list[nn.Parameter] = []

    def walk(prefix: str, module: nn.Module) -> None:
        loose.extend(module.parameters(recurse=False))
        for child_name, child in module.named_children():
            path = f"{prefix}{child_name}"
            if path in ancestors:
                walk(f"{path}.", child)
            else:
                units.append((path, child))

    walk("", model)
    index = {path: k for k, (path, _) in enumerate(units)}
    modules = [module for _, module in units]
    ends = [index.get(path) for path in level_modules]
    if any(end is None for end in ends):  # an unusual layout: freeze it as one block
        return [_Group(modules, loose), *(_Group([], []) for _ in ends)], _Group([], [])
    bounds = [end for end in ends if end is not None]
    parent = level_modules[0].rpartition(".")[0]
    if stem_end is not None and stem_end in index:
        start = index[stem_end] + 1
    elif parent:
        start = next(k for k, (path, _) in enumerate(units) if path.startswith(f"{parent}."))
    else:
        start = bounds[0]
    start = min(start, bounds[0])
    groups = [_Group(modules[:start], loose)]
    previous = start
    for end in bounds:
        groups.append(_Group(modules[previous : end + 1], []))
        previous = end + 1
    return groups, _Group(modules[previous:], [])


class TimmBackbone(Backbone):
    """A timm model: ``forward_multiscale`` through ``forward_intermediates``."""

    _stages: list[_Group]
    _rest: _Group

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str,
        levels: Sequence[tuple[str, int, int, int]],
        pre_logits_dim: int,
    ) -> None:
        feature_info = [FeatureLevel(name=n, channels=c, stride=s) for n, c, s, _ in levels]
        super().__init__(name=name, feature_info=feature_info, pre_logits_dim=pre_logits_dim)
        self.model = model
        self._indices = [index for *_, index in levels]
        self._names = [n for n, *_ in levels]
        info = list(model.feature_info)  # type: ignore[arg-type]
        modules = [info[i]["module"] for i in self._indices]
        stem = [f["module"] for f in info[: self._indices[0]] if int(f["reduction"]) < 4]
        stages, rest = stage_groups(model, modules, stem[-1] if stem else None)
        self._stages = stages  # plain attributes: the groups are views, not submodules
        object.__setattr__(self, "_rest", rest)

    @property
    def _timm(self) -> Any:
        """The timm model, typed for its own methods (forward_intermediates, forward_head)."""
        return self.model

    def stages(self) -> list[nn.Module]:
        return list(self._stages)

    def _pre_logits_modules(self) -> list[nn.Module]:
        return [self._rest]

    def forward_multiscale(self, x: Tensor) -> dict[str, Tensor]:
        maps = self._timm.forward_intermediates(x, indices=self._indices, intermediates_only=True)
        return dict(zip(self._names, maps, strict=True))

    def forward_pre_logits(self, x: Tensor) -> Tensor:
        return self._timm.forward_head(self._timm.forward_features(x), pre_logits=True)


def build_timm_backbone(config: BackboneConfig, *, entry: dict[str, Any]) -> TimmBackbone:
    """Builder of every ``timm/...`` backbone; ``entry`` is its manifest row."""
    name = timm_name(config.model_name)
    model, source, final_layer = create_with_weights(name, config, entry)
    backbone = TimmBackbone(
        model,
        name=config.model_name,
        levels=[tuple(level) for level in entry["levels"]],
        pre_logits_dim=entry["pre_logits_dim"],
    )
    if config.num_classes:
        backbone.classifier = nn.Linear(backbone.pre_logits_dim, config.num_classes)
    if final_layer is not None:
        backbone.pretrained_classifier_state = final_layer
        classifier = backbone.classifier
        if isinstance(classifier, nn.Linear) and all(
            getattr(classifier, k).shape == v.shape for k, v in final_layer.items()
        ):
            with torch.no_grad():
                classifier.load_state_dict(final_layer)
    backbone.weights_source = source
    return backbone
