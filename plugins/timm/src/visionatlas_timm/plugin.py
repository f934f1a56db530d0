"""Hook implementations of the timm bridge (imports neither torch nor timm).

Every timm model that produces feature maps is registered as the backbone
``timm/<model>`` from the manifest; the task plugins then derive their architectures
for it like for any other backbone.
"""

from __future__ import annotations

from dataclasses import asdict

from visionatlas import LazyCall, hookimpl
from visionatlas.plugins.registrar import Registrar
from visionatlas.specs import BackboneSpec, FeatureLevel, WeightsSpec
from visionatlas_timm.manifest import Entry, manifest_for_installed_timm
from visionatlas_timm.naming import backbone_name

BUILDER = "visionatlas_timm.backbone:build_timm_backbone"


@hookimpl
def visionatlas_api_version() -> int:
    return 1


def backbone_spec(entry: Entry) -> BackboneSpec:
    """The catalog entry of one timm model."""
    levels = tuple(FeatureLevel(name=n, channels=c, stride=s) for n, c, s, _ in entry.levels)
    fixed = f"; fixed input size {entry.input_size}" if entry.fixed_input_size else ""
    weights = f"{entry.default_tag} and {len(entry.tags) - 1} more" if len(entry.tags) > 1 else ""
    note = f"timm {entry.family}; weights {weights or entry.default_tag}" if entry.tags else ""
    return BackboneSpec(
        name=backbone_name(entry.name),
        builder=LazyCall(BUILDER, entry=asdict(entry)),
        family=entry.family,
        display_name=f"{entry.name} (timm)",
        out_channels=levels[-1].channels,
        pre_logits_dim=entry.pre_logits_dim,
        num_params=entry.num_params,
        feature_levels=levels,
        pretrained_weights=_weights(entry),
        default_input_size=entry.input_size,
        min_input_size=entry.min_input_size,
        note=(note + fixed) if note else f"timm {entry.family}, no pretrained weights{fixed}",
        tags=("timm", *(("license:" + entry.license,) if entry.license else ())),
    )


def _weights(entry: Entry) -> WeightsSpec | None:
    """The default pretrained weights, as metadata: the builder loads them through timm."""
    if not entry.tags:
        return None
    full = f"{entry.name}.{entry.default_tag}"
    return WeightsSpec(
        url=f"https://huggingface.co/timm/{full}",
        name=entry.default_tag,
    )


@hookimpl
def visionatlas_register_backbones(registrar: Registrar) -> None:
    for entry in manifest_for_installed_timm().entries:
        registrar.add_backbone(backbone_spec(entry))
