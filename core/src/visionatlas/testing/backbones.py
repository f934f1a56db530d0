""":func:`check_backbone`: build a backbone, run it, and compare it with its spec."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from visionatlas.catalog import Catalog, get_catalog
from visionatlas.specs import BackboneSpec, FeatureLevel
from visionatlas.testing._common import CheckFailed, call, few

if TYPE_CHECKING:
    from torch import Tensor

    from visionatlas.models.backbones.base import Backbone

__all__ = ["BackboneCheck", "check_backbone"]

BATCH_SIZE = 2
CHECK_NUM_CLASSES = 3


@dataclass(frozen=True)
class BackboneCheck:
    """What :func:`check_backbone` measured."""

    name: str
    input_shape: tuple[int, ...]
    feature_levels: tuple[FeatureLevel, ...]
    """Name, channels and stride of every map of ``forward_multiscale``, in its order."""
    out_channels: int
    pre_logits_dim: int
    num_params: int
    """Parameters of the backbone built with ``num_classes=0``."""
    num_stages: int


def check_backbone(
    name: str,
    *,
    catalog: Catalog | None = None,
    input_size: int | tuple[int, int] | None = None,
) -> BackboneCheck:
    """Build backbone ``name`` and check, on a real forward pass, everything its spec says.

    The backbone runs in eval mode on 2 random images of ``input_size`` (default:
    ``min_input_size`` when it is 64 or more, else 64 rounded up to a multiple of the largest
    stride).
    Checks the level names, channels and strides of ``forward_multiscale`` (stride = input
    side / map side, rounded up), ``feature_info`` against the spec's ``feature_levels``,
    ``out_channels`` (the final map's channels and the attribute), ``pre_logits_dim`` (the
    width of ``forward_pre_logits``), ``num_params`` when declared (the backbone built with
    ``num_classes=0``), that ``freeze(k)`` for every ``k`` from 0 to ``len(stages())``
    leaves exactly the last ``k`` stages (and the pre-logits layers when ``k > 0``)
    trainable and that ``unfreeze()`` undoes it, and that a backbone built with
    ``num_classes=3`` gives ``(2, 3)`` logits from ``forward_head``.
    """
    import torch

    from visionatlas.models.inspection import count_parameters

    catalog = catalog or get_catalog()
    label = f"backbone {name!r}"
    spec: BackboneSpec = call(label, "looking it up", catalog.get_backbone, name)
    backbone = _create(catalog, label, name, 0).eval()
    height, width = _input_size(spec, input_size)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(BATCH_SIZE, 3, height, width, generator=generator)
    shape = tuple(images.shape)

    with torch.no_grad():
        features = call(
            label, f"forward_multiscale on {shape}", backbone.forward_multiscale, images
        )
        measured = _measured_levels(spec, features, label, (height, width))
        final = call(label, f"forward on {shape}", backbone, images)
        pre_logits = call(
            label, f"forward_pre_logits on {shape}", backbone.forward_pre_logits, images
        )

    final_channels = final.shape[1] if isinstance(final, torch.Tensor) and final.ndim == 4 else None
    _same(
        label,
        "out_channels (channels of the final map from forward)",
        spec.out_channels,
        final_channels,
    )
    _same(
        label, "out_channels (the backbone's attribute)", spec.out_channels, backbone.out_channels
    )
    _same(label, "feature_info", _levels(spec.feature_levels), _levels(backbone.feature_info))
    _same(
        label,
        f"pre_logits_dim (shape of forward_pre_logits on {shape})",
        (BATCH_SIZE, spec.pre_logits_dim),
        _shape(pre_logits),
    )
    _same(
        label,
        "pre_logits_dim (the backbone's attribute)",
        spec.pre_logits_dim,
        backbone.pre_logits_dim,
    )
    num_params = count_parameters(backbone, trainable_only=False)
    if spec.num_params is not None and num_params != spec.num_params:
        raise CheckFailed(
            f"{label}: the spec says num_params={spec.num_params:,}, but the backbone built "
            f"with num_classes=0 has {num_params:,} parameters "
            f"(difference {num_params - spec.num_params:+,})"
        )
    num_stages = _check_freezing(backbone, label)
    _check_classifier(catalog, label, name, images)

    return BackboneCheck(
        name=name,
        input_shape=shape,
        feature_levels=measured,
        out_channels=spec.out_channels,
        pre_logits_dim=spec.pre_logits_dim,
        num_params=num_params,
        num_stages=num_stages,
    )


def _create(catalog: Catalog, label: str, name: str, num_classes: int) -> Backbone:
    from visionatlas.models.backbones.base import Backbone

    backbone = call(
        label, f"building it with num_classes={num_classes}", catalog.create_backbone, name,
        num_classes=num_classes,
    )  # fmt: skip
    if not isinstance(backbone, Backbone):
        raise CheckFailed(
            f"{label}: its builder returned a {type(backbone).__name__}, not a subclass of "
            "visionatlas.models.backbones.base.Backbone"
        )
    return backbone


def _input_size(spec: BackboneSpec, input_size: int | tuple[int, int] | None) -> tuple[int, int]:
    if isinstance(input_size, int):
        return input_size, input_size
    if input_size is not None:
        return input_size
    if spec.min_input_size >= 64:  # it runs there (some models run at one size only)
        return spec.min_input_size, spec.min_input_size
    largest = max((level.stride for level in spec.feature_levels), default=32)
    side = -(-64 // largest) * largest
    return side, side


def _levels(levels: Sequence[FeatureLevel]) -> list[str]:
    return [f"{level.name} ({level.channels} channels, stride {level.stride})" for level in levels]


def _shape(value: object) -> object:
    shape = getattr(value, "shape", None)
    return tuple(shape) if shape is not None else type(value).__name__


def _same(label: str, what: str, declared: object, measured: object) -> None:
    if declared != measured:
        raise CheckFailed(f"{label}: {what}: the spec declares {declared}, measured {measured}")


def _measured_levels(
    spec: BackboneSpec, features: object, label: str, size: tuple[int, int]
) -> tuple[FeatureLevel, ...]:
    """The levels of ``features``, checked against the spec's: names, channels, strides."""
    import torch

    if not isinstance(features, Mapping):
        raise CheckFailed(
            f"{label}: forward_multiscale returned a {type(features).__name__}, not a dict of "
            "feature maps keyed by level name"
        )
    declared = {level.name: level for level in spec.feature_levels}
    _same(label, "feature level names (keys of forward_multiscale)", list(declared), list(features))
    measured: list[FeatureLevel] = []
    problems: list[str] = []
    for level_name, value in features.items():
        if not isinstance(value, torch.Tensor) or value.ndim != 4 or value.shape[0] != BATCH_SIZE:
            raise CheckFailed(
                f"{label}: level {level_name!r} of forward_multiscale is {_shape(value)}, not an "
                f"({BATCH_SIZE}, C, H, W) feature map"
            )
        level = declared[level_name]
        channels = int(value.shape[1])
        fits = _fits(size, value, level.stride)
        stride = level.stride if fits else _stride(size, value)
        measured.append(FeatureLevel(name=level_name, channels=channels, stride=stride))
        if channels != level.channels:
            problems.append(
                f"{level_name} channels: declared {level.channels}, measured {channels}"
            )
        if not fits:
            problems.append(
                f"{level_name} stride: declared {level.stride}, measured {stride} (a "
                f"{size[0]}x{size[1]} input gives a {value.shape[2]}x{value.shape[3]} map)"
            )
    if problems:
        raise CheckFailed(f"{label}: its feature maps differ from the spec: {'; '.join(problems)}")
    return tuple(measured)


def _stride(size: tuple[int, int], value: Tensor) -> int:
    """The stride that ``value``'s height shows: input height / map height, rounded."""
    return max(1, round(size[0] / max(int(value.shape[2]), 1)))


def _fits(size: tuple[int, int], value: Tensor, stride: int) -> bool:
    """Whether ``value``'s spatial size is ``size / stride``, rounded down or up."""
    sides = (int(value.shape[2]), int(value.shape[3]))
    return all(
        side in (full // stride, -(-full // stride)) for full, side in zip(size, sides, strict=True)
    )


def _check_freezing(backbone: Backbone, label: str) -> int:
    """``freeze(k)`` leaves exactly the last ``k`` stages (and pre-logits) trainable."""
    stages = call(label, "stages()", backbone.stages)
    if not stages:
        raise CheckFailed(
            f"{label}: stages() is empty; it should list the stem and one group per level"
        )
    names = {id(p): n for n, p in backbone.named_parameters()}

    def owned(modules: Sequence[Any]) -> set[str]:
        return {names[id(p)] for module in modules for p in module.parameters() if id(p) in names}

    # What Backbone.freeze counts with the last stage (ConvNeXt's norm, MobileNetV3's hidden
    # layer); a family overrides this hook of the base class, so ask it rather than guess.
    pre_logits = owned(backbone._pre_logits_modules())
    covered = owned(stages) | pre_logits
    outside = sorted(set(names.values()) - covered)
    if outside:
        raise CheckFailed(
            f"{label}: parameters in none of its {len(stages)} stages nor the pre-logits layers, "
            f"so freezing never trains them: {few(outside)}"
        )
    for k in range(len(stages) + 1):
        call(label, f"freeze({k})", backbone.freeze, k)
        expected = owned(stages[len(stages) - k :]) | (pre_logits if k else set())
        trainable = {n for n, p in backbone.named_parameters() if p.requires_grad}
        if trainable != expected:
            what = f"the last {k} of its {len(stages)} stages" + (
                " and the pre-logits layers" if k else ""
            )
            details = []
            if trainable - expected:
                details.append(f"also trainable: {few(sorted(trainable - expected))}")
            if expected - trainable:
                details.append(f"frozen: {few(sorted(expected - trainable))}")
            raise CheckFailed(
                f"{label}: freeze({k}) should leave exactly {what} trainable; {'; '.join(details)}"
            )
    call(label, "unfreeze()", backbone.unfreeze)
    frozen = sorted(n for n, p in backbone.named_parameters() if not p.requires_grad)
    if frozen:
        raise CheckFailed(f"{label}: after unfreeze() these stay frozen: {few(frozen)}")
    return len(stages)


def _check_classifier(catalog: Catalog, label: str, name: str, images: Tensor) -> None:
    """Built with ``num_classes=3``, ``forward_head`` gives ``(N, 3)`` logits."""
    import torch

    backbone = _create(catalog, label, name, CHECK_NUM_CLASSES).eval()
    if backbone.classifier is None:
        raise CheckFailed(
            f"{label}: built with BackboneConfig(num_classes={CHECK_NUM_CLASSES}) it has no "
            "classifier (classifier is None); the builder ignores num_classes"
        )
    with torch.no_grad():
        logits = call(
            label,
            f"forward_head of the backbone built with num_classes={CHECK_NUM_CLASSES}",
            backbone.forward_head,
            images,
        )
    _same(
        label,
        f"forward_head output with num_classes={CHECK_NUM_CLASSES}",
        (len(images), CHECK_NUM_CLASSES),
        _shape(logits),
    )
