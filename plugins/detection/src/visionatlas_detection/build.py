"""From a validated config to a detector: options, pretrained weights and freezing.

Two kinds of architectures share this path:

- :class:`TorchvisionRecipe`: torchvision's own detectors (``fasterrcnn_resnet50_fpn`` ...),
  rebuilt from torchvision's parts exactly as its builders do, so that COCO checkpoints
  load; weights are fetched here (offline-friendly) instead of by torchvision.
- :class:`AnyBackboneRecipe`: the same detectors on any registered multi-scale backbone,
  through :class:`~visionatlas_detection.backbone_adapter.BackboneFPN`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import Tensor, nn
from torchvision.ops.misc import FrozenBatchNorm2d

from visionatlas.catalog import current_catalog
from visionatlas.config import BackboneConfig, ModelConfig
from visionatlas.errors import IncompatibleBackboneError, PretrainedWeightsError
from visionatlas.models.backbones.weights import fetch_state_dict
from visionatlas.models.deferred_init import construct_and_load, taking_weights
from visionatlas_detection.backbone_adapter import BackboneFPN, freeze_batchnorm, levels_at
from visionatlas_detection.config import DetectionConfig
from visionatlas_detection.heads import TORCHVISION_FOCAL
from visionatlas_detection.models import Detector, attach
from visionatlas_detection.specs import compatible_backbones, incompatibility
from visionatlas_detection.weights import Checkpoint, fetch_checkpoint, load_checkpoint

__all__ = [
    "AnyBackboneRecipe",
    "Family",
    "Options",
    "TorchvisionRecipe",
    "build_any_backbone_detector",
    "build_torchvision_detector",
]

DEFAULT_FPN_CHANNELS = 256
ModuleT = TypeVar("ModuleT", bound=nn.Module)


@dataclass(frozen=True)
class Family:
    """How a detector family names its inference options, and which options it has."""

    title: str
    score_key: str = "score_thresh"
    nms_key: str = "nms_thresh"
    detections_key: str = "detections_per_img"
    focal: bool = False
    """Sigmoid focal classification loss (``focal_alpha``/``focal_gamma`` apply)."""
    fixed_size: bool = False
    """Images are resized to one ``min_size`` square (SSD); ``max_size`` does not apply."""
    proposals: bool = False
    """Two-stage: a region proposal network (``proposals_per_image`` applies)."""


@dataclass(frozen=True)
class Options:
    """Construction options resolved from the config, handed to a recipe's constructor."""

    num_classes: int
    frozen_batchnorm: bool
    fpn_channels: int
    focal_alpha: float
    focal_gamma: float
    detector_kwargs: dict[str, Any]
    pretrained_backbone: bool = False
    """The backbone's ImageNet weights are loaded (``backbone_state`` or by the core)."""
    backbone_state: dict[str, Tensor] | None = None
    """ImageNet weights of a torchvision trunk, loaded into it before it is wrapped."""

    @property
    def norm_layer(self) -> Callable[..., nn.Module]:
        """The trunk's norm layer: ``FrozenBatchNorm2d`` or ``BatchNorm2d``."""
        return FrozenBatchNorm2d if self.frozen_batchnorm else nn.BatchNorm2d


@dataclass(frozen=True)
class TorchvisionRecipe:
    """One of torchvision's detectors: how to rebuild it and where its weights are."""

    name: str
    family: Family
    construct: Callable[[Options], Detector]
    weights: str
    """Full-detector weights, e.g. ``"FasterRCNN_ResNet50_FPN_Weights.DEFAULT"``."""
    backbone: str
    backbone_weights: str
    """The ImageNet weights torchvision's builder loads for ``weights_backbone``."""
    frozen_batchnorm_when_pretrained: bool = True
    legacy_eps_weights: str | None = None
    """Weights member after whose loading torchvision sets ``FrozenBatchNorm2d.eps = 0``."""
    default_trainable_layers: int = 3
    fpn: bool = True
    groupnorm_heads: bool = False


@dataclass(frozen=True)
class AnyBackboneRecipe:
    """A detector on any registered backbone with levels at ``strides``."""

    name: str
    family: Family
    strides: tuple[int, ...]
    extra_blocks: Callable[[int], nn.Module]
    """The FPN's extra levels, given its channels (``LastLevelMaxPool``, ``LastLevelP6P7``)."""
    construct: Callable[[BackboneFPN, Options], Detector]
    groupnorm_heads: bool = False
    default_backbone: str = "resnet50"
    default_trainable_layers: int = 3


# -- config handling ---------------------------------------------------------------------------
def as_detection_config(config: ModelConfig) -> DetectionConfig:
    if isinstance(config, DetectionConfig):
        return config
    return DetectionConfig.model_validate(config.model_dump(exclude_unset=True))


def _check_num_classes(num_classes: int, name: str) -> None:
    if num_classes < 2:
        raise ValueError(
            f"{name} needs num_classes >= 2: it counts the background (label 0) plus at "
            f"least one object class, got {num_classes}"
        )


def _resolve_options(
    cfg: DetectionConfig,
    family: Family,
    num_classes: int,
    *,
    name: str,
    fpn: bool,
    groupnorm_heads: bool,
    frozen_batchnorm: bool,
    pretrained_backbone: bool,
    backbone_state: dict[str, Tensor] | None = None,
) -> Options:
    if not family.focal and (cfg.focal_alpha is not None or cfg.focal_gamma is not None):
        raise ValueError(
            f"focal_alpha/focal_gamma apply to FCOS and RetinaNet (sigmoid focal loss); "
            f"{name} ({family.title}) trains its classifier with cross-entropy"
        )
    if not family.proposals and cfg.proposals_per_image is not None:
        raise ValueError(
            f"proposals_per_image applies to two-stage detectors (Faster/Mask R-CNN); {name} "
            f"({family.title}) predicts boxes densely without proposals"
        )
    if not fpn and cfg.fpn_channels is not None:
        raise ValueError(f"fpn_channels does not apply to {name}: it has no feature pyramid")
    channels = cfg.fpn_channels or DEFAULT_FPN_CHANNELS
    if groupnorm_heads and channels % 32:
        raise ValueError(
            f"fpn_channels={channels}: the heads of {name} use GroupNorm(32), so the channels "
            "must be a multiple of 32"
        )
    kwargs: dict[str, Any] = {}
    if family.fixed_size and cfg.max_size is not None:
        raise ValueError(
            f"max_size does not apply to {name}: it resizes every image to one min_size x "
            "min_size square; set min_size only"
        )
    for key, value in (
        ("min_size", cfg.min_size),
        ("max_size", cfg.max_size),
        ("image_mean", None if cfg.image_mean is None else list(cfg.image_mean)),
        ("image_std", None if cfg.image_std is None else list(cfg.image_std)),
        (family.score_key, cfg.score_thresh),
        (family.nms_key, cfg.nms_thresh),
        (family.detections_key, cfg.detections_per_img),
    ):
        if value is not None:
            kwargs[key] = value
    if cfg.proposals_per_image is not None:
        for stage in ("train", "test"):
            kwargs[f"rpn_pre_nms_top_n_{stage}"] = cfg.proposals_per_image
            kwargs[f"rpn_post_nms_top_n_{stage}"] = cfg.proposals_per_image
    return Options(
        num_classes=num_classes,
        frozen_batchnorm=frozen_batchnorm,
        fpn_channels=channels,
        focal_alpha=TORCHVISION_FOCAL[0] if cfg.focal_alpha is None else cfg.focal_alpha,
        focal_gamma=TORCHVISION_FOCAL[1] if cfg.focal_gamma is None else cfg.focal_gamma,
        detector_kwargs=kwargs,
        pretrained_backbone=pretrained_backbone,
        backbone_state=backbone_state,
    )


def _trainable_layers(cfg: DetectionConfig, model: Detector, default: int, name: str) -> int:
    stages = len(model.backbone_stages())
    if cfg.freeze_backbone:
        return 0
    if cfg.trainable_backbone_layers is None:
        return min(default, stages)
    if cfg.trainable_backbone_layers > stages:
        raise ValueError(
            f"trainable_backbone_layers={cfg.trainable_backbone_layers} is more than the "
            f"{stages} stages of {name}'s backbone; use 0 to {stages}"
        )
    return cfg.trainable_backbone_layers


def _construct(
    construct: Callable[[], Detector], checkpoint: Checkpoint | None, name: str
) -> Detector:
    """``construct()``, with the checkpoint's weights loaded (without initialising them first)."""
    if checkpoint is None:
        return construct()
    return construct_and_load(
        construct, lambda model: load_checkpoint(model, checkpoint, architecture=name)
    )


def _finish(
    model: Detector, cfg: DetectionConfig, *, name: str, trainable_default: int
) -> Detector:
    model.freeze_backbone(_trainable_layers(cfg, model, trainable_default, name))
    return model


def build_trunk(
    construct: Callable[[], ModuleT], state: dict[str, Tensor] | None, name: str
) -> ModuleT:
    """``construct()`` a torchvision classifier as a trunk, loading ``state`` into it if given."""
    if state is None:
        return construct()
    return construct_and_load(construct, lambda trunk: load_trunk_weights(trunk, state, name))


# -- torchvision's detectors -------------------------------------------------------------------
def build_torchvision_detector(
    config: ModelConfig, num_classes: int, recipe: TorchvisionRecipe
) -> Detector:
    """Build one of torchvision's detectors, loading full or backbone-only weights."""
    cfg = as_detection_config(config)
    _check_num_classes(num_classes, recipe.name)
    if cfg.backbone is not None and cfg.backbone != recipe.backbone:
        shown = cfg.backbone if isinstance(cfg.backbone, str) else "a BackboneConfig"
        raise IncompatibleBackboneError(
            f"{recipe.name} is torchvision's detector on its own {recipe.backbone!r} trunk, "
            f"so backbone accepts only {recipe.backbone!r}, got {shown!r}; for other backbones "
            "(or BackboneConfig options) use the any-backbone architecture of the same "
            "family, e.g. 'fasterrcnn', 'fcos' or 'retinanet'"
        )
    loads = cfg.pretrained or cfg.weights_path is not None
    scope = (cfg.pretrained_scope or "full") if loads else None
    checkpoint = backbone_state = None
    if scope == "full":
        if cfg.fpn_channels not in (None, DEFAULT_FPN_CHANNELS):
            raise ValueError(
                f"fpn_channels={cfg.fpn_channels} resizes every FPN and head layer, so the "
                f"full pretrained weights of {recipe.name} ({DEFAULT_FPN_CHANNELS} channels) "
                "cannot load; keep fpn_channels=256, or load only the backbone with "
                "pretrained_scope='backbone'"
            )
        checkpoint = fetch_checkpoint(
            recipe.name, recipe.weights, member=cfg.weights, weights_path=cfg.weights_path
        )
    elif scope == "backbone":
        source = BackboneConfig(
            model_name=recipe.backbone,
            pretrained=True,
            weights=cfg.backbone_weights,
            weights_path=cfg.weights_path,
        )
        backbone_state = fetch_state_dict(recipe.backbone, recipe.backbone_weights, source)
    trained = scope is not None
    frozen = cfg.frozen_batchnorm
    if frozen is None:
        frozen = trained and recipe.frozen_batchnorm_when_pretrained
    options = _resolve_options(
        cfg,
        recipe.family,
        num_classes,
        name=recipe.name,
        fpn=recipe.fpn,
        groupnorm_heads=recipe.groupnorm_heads,
        frozen_batchnorm=frozen,
        pretrained_backbone=scope == "backbone",
        backbone_state=backbone_state,
    )
    model = _construct(lambda: recipe.construct(options), checkpoint, recipe.name)
    stages = len(model.backbone_stages())
    model = _finish(
        model,
        cfg,
        name=recipe.name,
        trainable_default=recipe.default_trainable_layers if trained else stages,
    )
    legacy = checkpoint.weights if checkpoint is not None else None
    if legacy is not None and legacy.name == recipe.legacy_eps_weights:
        for module in model.modules():  # torchvision's fix-up for these early checkpoints
            if isinstance(module, FrozenBatchNorm2d):
                module.eps = 0.0
    return model


def load_trunk_weights(trunk: nn.Module, state: dict[str, Tensor], name: str) -> None:
    """Load ImageNet weights (classifier included) into a torchvision classification model."""
    try:
        with taking_weights():  # the state was read for this build
            result = trunk.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise PretrainedWeightsError(f"backbone weights do not fit {name}: {err}") from err
    if result.missing_keys or result.unexpected_keys:
        raise PretrainedWeightsError(
            f"backbone weights do not match {name}: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )


# -- any backbone ------------------------------------------------------------------------------
def build_any_backbone_detector(
    config: ModelConfig, num_classes: int, recipe: AnyBackboneRecipe
) -> Detector:
    """Build ``recipe`` on the configured registered backbone (default ResNet-50)."""
    cfg = as_detection_config(config)
    _check_num_classes(num_classes, recipe.name)
    if cfg.weights is not None:
        raise PretrainedWeightsError(
            f"weights={cfg.weights!r} names torchvision detector weights, which exist only "
            f"for the torchvision architectures; {recipe.name} loads backbone weights "
            "(pretrained=True, backbone_weights) or a full checkpoint (weights_path with "
            "pretrained_scope='full')"
        )
    catalog = current_catalog()
    backbone_config = cfg.backbone_config(default=recipe.default_backbone)
    spec = catalog.get_backbone(backbone_config.model_name)
    why = incompatibility(spec, recipe.strides)
    if why is not None:
        accepted = compatible_backbones(catalog.backbones(), recipe.strides)
        raise IncompatibleBackboneError(
            f"{recipe.name} builds a feature pyramid over backbone levels at strides "
            f"{list(recipe.strides)}, but {why}. Accepted backbones: {', '.join(accepted)}"
        )
    loads = cfg.pretrained or cfg.weights_path is not None
    full = loads and cfg.pretrained_scope == "full"
    checkpoint = None
    if full:
        checkpoint = fetch_checkpoint(recipe.name, None, weights_path=cfg.weights_path)
        backbone_config = backbone_config.model_copy(
            update={"pretrained": False, "weights_path": None, "weights": None}
        )
    elif cfg.backbone_weights is not None:
        backbone_config = backbone_config.model_copy(update={"weights": cfg.backbone_weights})
    pretrained_backbone = backbone_config.pretrained or backbone_config.weights_path is not None
    trained = full or pretrained_backbone
    frozen = cfg.frozen_batchnorm if cfg.frozen_batchnorm is not None else trained
    options = _resolve_options(
        cfg,
        recipe.family,
        num_classes,
        name=recipe.name,
        fpn=True,
        groupnorm_heads=recipe.groupnorm_heads,
        frozen_batchnorm=frozen,
        pretrained_backbone=pretrained_backbone,
    )
    channels = options.fpn_channels
    trunk_config = BackboneConfig.model_validate(backbone_config.model_dump())

    def construct() -> Detector:
        trunk = catalog.create_backbone(trunk_config)
        trunk.pre_logits = nn.Identity()  # pooling-side layers: unused by detectors
        trunk.pretrained_classifier_state = None
        levels = levels_at(trunk, recipe.strides, architecture=recipe.name)
        if frozen:
            freeze_batchnorm(trunk)
        adapter = BackboneFPN(trunk, levels, channels, recipe.extra_blocks(channels))
        detector = recipe.construct(adapter, options)
        return attach(detector, num_classes=num_classes, stages=trunk.stages())

    model = _construct(construct, checkpoint, recipe.name)
    stages = len(model.backbone_stages())
    return _finish(
        model,
        cfg,
        name=recipe.name,
        trainable_default=recipe.default_trainable_layers if trained else stages,
    )
