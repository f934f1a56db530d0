"""Build timm models with timm's own pretrained-weight mechanism, and say clearly when it fails.

Sources, in order: ``BackboneConfig.weights_path`` (a local file, loaded by timm with the
model's own key filter); the Hugging Face hub cache (``$HF_HOME/hub``), or torch hub's for the
few models whose weights are plain URLs; a download, unless ``VISIONATLAS_OFFLINE`` is set.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import timm
from torch import Tensor, nn

from visionatlas.config import BackboneConfig
from visionatlas.errors import PretrainedWeightsError
from visionatlas.models.backbones.weights import OFFLINE_ENV

__all__ = ["create_with_weights", "resolve_tag", "weights_location"]

_HUB_FILES = ("model.safetensors", "pytorch_model.bin")
_UNEXPECTED = re.compile(r"unexpected keyword argument '([^']+)'")


def resolve_tag(name: str, wanted: str | None, entry: dict[str, Any]) -> str:
    """The pretrained tag ``BackboneConfig.weights`` names: ``None``/``"DEFAULT"`` -> default."""
    tags: list[str] = list(entry["tags"])
    if not tags:
        raise PretrainedWeightsError(
            f"timm model {name!r} has no pretrained weights in timm "
            f"(no 'name.tag' entry in timm.list_pretrained()); pass a local file with "
            "weights_path, or build it with pretrained=False"
        )
    if wanted is None or wanted.strip().upper() == "DEFAULT":
        return str(entry["default_tag"] or tags[0])
    tag = wanted.strip().removeprefix(f"{name}.")
    if tag not in tags:
        raise PretrainedWeightsError(
            f"timm model {name!r} has no pretrained tag {wanted!r}; accepted for "
            f"BackboneConfig.weights: 'DEFAULT' or one of {', '.join(tags)}"
        )
    return tag


def weights_location(name: str, tag: str) -> tuple[str, Path | None, str]:
    """``(url, cached file or None, where the cache keeps it)`` for ``name.tag``."""
    cfg = timm.models.get_pretrained_cfg(f"{name}.{tag}")
    hub_id = cfg.hf_hub_id if cfg is not None else None
    if hub_id:
        from huggingface_hub import try_to_load_from_cache
        from huggingface_hub.constants import HF_HUB_CACHE

        for filename in _HUB_FILES:
            found = try_to_load_from_cache(hub_id, filename)
            if isinstance(found, str):
                return f"https://huggingface.co/{hub_id}", Path(found), found
        folder = Path(HF_HUB_CACHE) / f"models--{hub_id.replace('/', '--')}"
        return f"https://huggingface.co/{hub_id}/resolve/main/{_HUB_FILES[0]}", None, str(folder)
    url = str(cfg.url) if cfg is not None and cfg.url else ""
    import torch.hub

    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url.split("?")[0])
    return url, cached if url and cached.is_file() else None, str(cached)


def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true"}


def _kwargs(config: BackboneConfig) -> dict[str, Any]:
    kwargs = dict(config.extra_kwargs)
    if config.drop_rate:
        kwargs["drop_rate"] = config.drop_rate
    if config.drop_path_rate:
        kwargs["drop_path_rate"] = config.drop_path_rate
    return kwargs


def _create(name: str, **kwargs: Any) -> nn.Module:
    try:
        return timm.create_model(name, **kwargs)
    except TypeError as err:
        match = _UNEXPECTED.search(str(err))
        if match is None:
            raise
        raise ValueError(
            f"timm model {name!r} does not take the argument {match.group(1)!r} (from "
            "BackboneConfig.extra_kwargs, drop_rate or drop_path_rate); see the model's "
            "constructor in timm for the arguments it takes"
        ) from err


def _split_classifier(model: nn.Module) -> dict[str, Tensor] | None:
    """Detach the pretrained classifier (kept for a head to adopt) and drop it."""
    head = model.get_classifier()  # type: ignore[operator]
    final = None
    if isinstance(head, nn.Linear):
        final = {k: v.detach().clone() for k, v in head.state_dict().items()}
    model.reset_classifier(0)  # type: ignore[operator]
    return final


def create_with_weights(
    name: str, config: BackboneConfig, entry: dict[str, Any]
) -> tuple[nn.Module, str | None, dict[str, Tensor] | None]:
    """``(model without classifier, weights source or None, pretrained final layer)``."""
    kwargs = _kwargs(config)
    if config.weights_path is not None:
        path = Path(config.weights_path).expanduser()
        if not path.is_file():
            raise PretrainedWeightsError(f"weights file {path} does not exist")
        try:
            model = _create(
                name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs
            )
        except (RuntimeError, KeyError, OSError) as err:
            raise PretrainedWeightsError(
                f"weights from {path} do not fit timm model {name!r}: {err}"
            ) from err
        return model, str(path), _split_classifier(model)
    if not config.pretrained:
        return _create(name, pretrained=False, num_classes=0, **kwargs), None, None
    tag = resolve_tag(name, config.weights, entry)
    url, cached, location = weights_location(name, tag)
    how = (
        f"download {url} and pass the file with weights_path (BackboneConfig.weights_path / "
        f"ModelConfig.weights_path), or run once with internet access so that timm fills "
        f"its cache at {location}"
    )
    if cached is not None:
        overlay = {"file": str(cached)}
        model = _create(f"{name}.{tag}", pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
        return model, str(cached), _split_classifier(model)
    if _offline():
        raise PretrainedWeightsError(
            f"pretrained weights {name}.{tag} for timm backbone 'timm/{name}' are not "
            f"available: {OFFLINE_ENV} is set, so nothing is downloaded, and they are not "
            f"cached. To use them, {how}"
        )
    try:
        model = _create(f"{name}.{tag}", pretrained=True, **kwargs)
    except (OSError, RuntimeError, ValueError) as err:
        if isinstance(err, ValueError) and "does not take the argument" in str(err):
            raise
        raise PretrainedWeightsError(
            f"pretrained weights {name}.{tag} for timm backbone 'timm/{name}' could not be "
            f"downloaded ({type(err).__name__}: {err}). To use them, {how}"
        ) from err
    _, cached, _ = weights_location(name, tag)
    return model, str(cached) if cached else url, _split_classifier(model)
