"""Pretrained weights of whole segmentation models: find, fetch and load them.

Sources, in order: ``ModelConfig.weights_path``; the torch hub cache
(``$TORCH_HOME/hub/checkpoints/<file>``); a download with ``torch.hub``, unless
``VISIONATLAS_OFFLINE`` is ``1`` or ``true``. Failures raise
:class:`~visionatlas.errors.PretrainedWeightsError` naming where the file would be found.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path

from torch import Tensor, nn

from visionatlas.errors import PretrainedWeightsError
from visionatlas.models.backbones.weights import (
    fetch_torchvision_weights,
    read_state_dict,
    torchvision_weights,
)
from visionatlas.models.deferred_init import (
    initialise_placeholders,
    placeholders,
    taking_weights,
)
from visionatlas_segmentation.model import SegmentationModel

__all__ = ["fetch_checkpoint", "load_checkpoint", "load_module_weights", "with_metadata"]

_SHOWN_KEYS = 5
_AUX = "aux_classifier."


def fetch_checkpoint(
    architecture: str, weights_ref: str, weights_path: Path | None
) -> tuple[dict[str, Tensor], str]:
    """``(state_dict, source)`` of a whole model, from the first source that has it."""
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        return read_state_dict(path), str(path)
    return fetch_torchvision_weights(
        torchvision_weights(weights_ref),
        owner=f"segmentation architecture {architecture!r}",
        alternatives="pass a local weights file with weights_path (ModelConfig.weights_path), "
        "or ask for the backbone's ImageNet weights only with pretrained_scope='backbone'",
    )


def with_metadata(
    source: Mapping[str, Tensor],
    state: dict[str, Tensor],
    rename: Callable[[str], str] = lambda key: key,
) -> dict[str, Tensor]:
    """``state`` carrying ``source``'s module versions (``_metadata``), keys renamed alike.

    ``load_state_dict`` passes each module its version, which BatchNorm uses to upgrade
    checkpoints saved by old PyTorch releases.
    """
    metadata = getattr(source, "_metadata", None)
    if metadata is None:
        return state
    carrier: dict[str, Tensor] = OrderedDict(state)
    setattr(carrier, "_metadata", {rename(k): v for k, v in metadata.items()})  # noqa: B010
    return carrier


def _keys(label: str, keys: list[str]) -> str:
    if not keys:
        return f"no {label} keys"
    more = f", ... ({len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else ""
    return f"{len(keys)} {label} keys: {', '.join(keys[:_SHOWN_KEYS])}{more}"


def load_module_weights(
    module: nn.Module,
    state: Mapping[str, Tensor],
    *,
    what: str,
    source: str,
    allowed_missing: frozenset[str] = frozenset(),
) -> None:
    """Load ``state`` into ``module``; every key must match except ``allowed_missing``."""
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise PretrainedWeightsError(f"weights from {source} do not fit {what}: {err}") from err
    missing = [k for k in result.missing_keys if k not in allowed_missing]
    unexpected = list(result.unexpected_keys)
    if missing or unexpected:
        raise PretrainedWeightsError(
            f"weights from {source} do not match {what}: {_keys('missing', missing)}; "
            f"{_keys('unexpected', unexpected)}"
        )


def load_checkpoint(
    model: SegmentationModel, state: Mapping[str, Tensor], *, what: str, source: str
) -> None:
    """Load a whole-model checkpoint the way torchvision's fine-tuning recipe does.

    Everything must match, except: the class layers (the heads' final convs) stay freshly
    initialized when their shape differs (another ``num_classes``); the checkpoint's
    auxiliary head is dropped when the model has none; and a model with an auxiliary head
    keeps a fresh one when the checkpoint has none.
    """
    own = model.state_dict()
    class_prefixes = tuple(f"{name}." for name in model.class_layers())
    checkpoint_has_aux = any(key.startswith(_AUX) for key in state)
    kept: dict[str, Tensor] = {}
    fresh: set[str] = set()
    for key, value in state.items():
        if key.startswith(_AUX) and model.aux_classifier is None:
            continue
        if key.startswith(class_prefixes) and key in own and own[key].shape != value.shape:
            fresh.add(key)
            continue
        kept[key] = value
    if not checkpoint_has_aux:
        fresh.update(key for key in own if key.startswith(_AUX))
    with taking_weights():  # the checkpoint was read for this load
        load_module_weights(
            model,
            with_metadata(state, kept),
            what=what,
            source=source,
            allowed_missing=frozenset(fresh),
        )
    if placeholders(model):  # built under deferred_init: the fresh layers start as torch's
        initialise_placeholders(model)
