"""torchvision's six semantic-segmentation models, built with torchvision's own builders.

The builder of ``torchvision.models.segmentation`` makes the layers (so outputs equal
torchvision's given the same weights); visionatlas then loads weights, applies the config
and wraps the parts in :class:`TorchvisionSegmentationModel`, keeping torchvision's state
dict keys.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torch import nn

from visionatlas.config import BackboneConfig
from visionatlas.errors import IncompatibleBackboneError
from visionatlas.models.backbones.torchvision_backbones import STAGE_ENDS
from visionatlas.models.backbones.weights import (
    checkpoint_path,
    fetch_state_dict,
    torchvision_weights,
)
from visionatlas.models.deferred_init import construct_and_load, initialise_placeholders
from visionatlas_segmentation.config import SegmentationConfig
from visionatlas_segmentation.losses import SegmentationLoss
from visionatlas_segmentation.model import SegmentationModel, group_modules
from visionatlas_segmentation.semantic_specs import (
    TORCHVISION_ARCHITECTURES,
    TorchvisionArchitecture,
)
from visionatlas_segmentation.weights import (
    fetch_checkpoint,
    load_checkpoint,
    load_module_weights,
    with_metadata,
)

__all__ = [
    "TorchvisionSegmentationModel",
    "build_torchvision_architecture",
    "deeplabv3_mobilenet",
    "deeplabv3_resnet50",
    "deeplabv3_resnet101",
    "fcn_resnet50",
    "fcn_resnet101",
    "lraspp_mobilenet",
]

ARCHITECTURES = {arch.name: arch for arch in TORCHVISION_ARCHITECTURES}
_BACKBONE_FIELDS = frozenset({"model_name", "pretrained", "weights", "weights_path"})
_RESNET_STAGES = (("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",))


def _sequential_stages(ends: tuple[int, ...]) -> tuple[tuple[str, ...], ...]:
    bounds = (0, *ends)
    return tuple(tuple(str(i) for i in range(a, b)) for a, b in itertools.pairwise(bounds))


@dataclass(frozen=True)
class _BackboneLayout:
    """Where the backbone's parts are in torchvision's model and its ImageNet checkpoint."""

    stages: tuple[tuple[str, ...], ...]
    """Child names of the backbone's ``IntermediateLayerGetter``, grouped by stage."""
    checkpoint_prefix: str
    """Prefix of the trunk's keys in the ImageNet classifier's checkpoint."""
    checkpoint_classifier: str
    """Prefix of the ImageNet classifier's keys, which the segmentation model lacks."""


_RESNET_LAYOUT = _BackboneLayout(_RESNET_STAGES, "", "fc.")
_LAYOUTS = {
    "resnet50": _RESNET_LAYOUT,
    "resnet101": _RESNET_LAYOUT,
    "mobilenet_v3_large": _BackboneLayout(
        _sequential_stages(STAGE_ENDS["mobilenet_v3_large"]), "features.", "classifier."
    ),
}


class TorchvisionSegmentationModel(SegmentationModel):
    """A torchvision segmentation model under the visionatlas contract.

    ``backbone`` is torchvision's ``IntermediateLayerGetter``; ``classifier`` and
    ``aux_classifier`` are torchvision's heads. Backbone stages are named by child.
    """

    def __init__(
        self,
        backbone: nn.Module,
        classifier: nn.Module,
        aux_classifier: nn.Module | None,
        *,
        criterion: SegmentationLoss,
        main_key: str | None,
        stages: tuple[tuple[str, ...], ...],
    ) -> None:
        super().__init__(
            backbone,
            classifier,
            aux_classifier,
            criterion=criterion,
            main_key=main_key,
            aux_key="aux" if aux_classifier is not None else None,
        )
        self.stage_names = stages

    def backbone_stages(self) -> list[nn.Module]:
        return [
            group_modules([self.backbone.get_submodule(name) for name in names])
            for names in self.stage_names
        ]


# -- config -------------------------------------------------------------------------------
def _own_backbone(
    arch: TorchvisionArchitecture, config: SegmentationConfig
) -> BackboneConfig | None:
    """The user's backbone config if it names this architecture's backbone; else refuse."""
    backbone = config.backbone
    name = backbone.model_name if isinstance(backbone, BackboneConfig) else backbone
    if name is not None and name != arch.backbone:
        generic = "fcn" if arch.head == "fcn" else "deeplabv3"
        raise IncompatibleBackboneError(
            f"segmentation architecture {arch.name!r} is torchvision's model on "
            f"{arch.backbone!r} and accepts no other backbone, got {name!r}; for another "
            f"backbone use the generic {generic!r}: create_model('segmentation', {generic!r}, "
            f"{{'backbone': {name!r}}})"
        )
    if not isinstance(backbone, BackboneConfig):
        return None
    extra = sorted(set(backbone.model_fields_set) - _BACKBONE_FIELDS)
    if extra:
        raise ValueError(
            f"{arch.name!r} builds its {arch.backbone} as torchvision does, so BackboneConfig "
            f"fields {extra} cannot be set (accepted: {', '.join(sorted(_BACKBONE_FIELDS))}); "
            "the generic 'deeplabv3' and 'fcn' take any backbone config"
        )
    return backbone


def _aux_head(arch: TorchvisionArchitecture, config: SegmentationConfig) -> bool:
    if config.aux_loss and not arch.has_aux_head:
        raise ValueError(
            f"{arch.name!r} has no auxiliary head, so aux_loss=True cannot be applied; "
            "FCN and DeepLabV3 architectures have one"
        )
    return arch.has_aux_head and config.aux_loss is not False


@dataclass(frozen=True)
class _WeightsPlan:
    scope: Literal["full", "backbone"]
    path: Path | None
    member: str | None = None


def _weights_plan(
    config: SegmentationConfig, backbone: BackboneConfig | None
) -> _WeightsPlan | None:
    if not config.asks_pretrained:
        return None
    scope = config.pretrained_scope
    if scope is None:
        model_level = config.pretrained or config.weights_path is not None
        scope = "full" if model_level else "backbone"
    if scope == "full":
        if backbone is not None and (backbone.weights or backbone.weights_path):
            raise ValueError(
                "the backbone config's weights/weights_path choose ImageNet weights of the "
                "backbone, but pretrained_scope='full' loads the whole model; set "
                "pretrained_scope='backbone' or drop them"
            )
        return _WeightsPlan("full", config.weights_path)
    path = (backbone.weights_path if backbone else None) or config.weights_path
    return _WeightsPlan("backbone", path, backbone.weights if backbone else None)


# -- building -----------------------------------------------------------------------------
def _load_backbone_weights(
    arch: TorchvisionArchitecture, model: SegmentationModel, plan: _WeightsPlan
) -> None:
    """Load the backbone's ImageNet classifier weights into torchvision's trunk."""
    layout = _LAYOUTS[arch.backbone]
    config = BackboneConfig(
        model_name=arch.backbone, pretrained=True, weights=plan.member, weights_path=plan.path
    )
    state = fetch_state_dict(arch.backbone, arch.backbone_weights, config)

    def rename(key: str) -> str:
        return key.removeprefix(layout.checkpoint_prefix)

    trunk = {
        rename(key): value
        for key, value in state.items()
        if not key.startswith(layout.checkpoint_classifier)
    }
    source = plan.path or checkpoint_path(torchvision_weights(arch.backbone_weights, plan.member))
    load_module_weights(
        model.backbone,
        with_metadata(state, trunk, rename),
        what=f"the {arch.backbone} trunk of {arch.name!r}",
        source=str(source),
    )


def build_torchvision_architecture(
    arch: TorchvisionArchitecture, config: SegmentationConfig, num_classes: int
) -> TorchvisionSegmentationModel:
    """Build ``arch`` with torchvision's builder, then load weights and apply ``config``."""
    from torchvision.models import segmentation

    backbone = _own_backbone(arch, config)
    aux = _aux_head(arch, config)
    if config.dropout is not None and arch.head == "lraspp":
        raise ValueError(f"{arch.name!r} has no dropout layer, so dropout cannot be set")
    plan = _weights_plan(config, backbone)
    kwargs: dict[str, Any] = {"weights": None, "weights_backbone": None, "num_classes": num_classes}
    if arch.has_aux_head:
        kwargs["aux_loss"] = aux

    def construct() -> TorchvisionSegmentationModel:
        built = getattr(segmentation, arch.torchvision_builder)(**kwargs)
        return TorchvisionSegmentationModel(
            built.backbone,
            built.classifier,
            getattr(built, "aux_classifier", None),
            criterion=SegmentationLoss.from_config(config, num_classes),
            main_key=None if arch.head == "lraspp" else "out",
            stages=_LAYOUTS[arch.backbone].stages,
        )

    if plan is not None and plan.scope == "full":

        def load(model: TorchvisionSegmentationModel) -> None:
            state, source = fetch_checkpoint(arch.name, arch.weights, plan.path)
            load_checkpoint(
                model, state, what=f"segmentation architecture {arch.name!r}", source=source
            )

        model = construct_and_load(construct, load)
    elif plan is not None:

        def load_trunk(model: TorchvisionSegmentationModel) -> None:
            _load_backbone_weights(arch, model, plan)
            initialise_placeholders(model)  # the heads: torch's default initialisation

        model = construct_and_load(construct, load_trunk)
    else:
        model = construct()
    if config.dropout is not None:
        model.set_head_dropout(config.dropout)
    trainable = config.backbone_trainable_stages
    if trainable is not None:
        model.freeze_backbone(trainable)
    return model


def fcn_resnet50(config: SegmentationConfig, num_classes: int) -> TorchvisionSegmentationModel:
    """torchvision's ``fcn_resnet50``."""
    return build_torchvision_architecture(ARCHITECTURES["fcn_resnet50"], config, num_classes)


def fcn_resnet101(config: SegmentationConfig, num_classes: int) -> TorchvisionSegmentationModel:
    """torchvision's ``fcn_resnet101``."""
    return build_torchvision_architecture(ARCHITECTURES["fcn_resnet101"], config, num_classes)


def deeplabv3_resnet50(
    config: SegmentationConfig, num_classes: int
) -> TorchvisionSegmentationModel:
    """torchvision's ``deeplabv3_resnet50``."""
    return build_torchvision_architecture(ARCHITECTURES["deeplabv3_resnet50"], config, num_classes)


def deeplabv3_resnet101(
    config: SegmentationConfig, num_classes: int
) -> TorchvisionSegmentationModel:
    """torchvision's ``deeplabv3_resnet101``."""
    return build_torchvision_architecture(ARCHITECTURES["deeplabv3_resnet101"], config, num_classes)


def deeplabv3_mobilenet(
    config: SegmentationConfig, num_classes: int
) -> TorchvisionSegmentationModel:
    """torchvision's ``deeplabv3_mobilenet_v3_large``."""
    return build_torchvision_architecture(ARCHITECTURES["deeplabv3_mobilenet"], config, num_classes)


def lraspp_mobilenet(config: SegmentationConfig, num_classes: int) -> TorchvisionSegmentationModel:
    """torchvision's ``lraspp_mobilenet_v3_large``."""
    return build_torchvision_architecture(ARCHITECTURES["lraspp_mobilenet"], config, num_classes)
