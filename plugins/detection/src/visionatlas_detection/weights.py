"""Full-detector checkpoints: find, fetch and load them (with new class layers if needed).

Sources, in order, as for backbones (see ``visionatlas.models.backbones.weights``): the config's
``weights_path``; the torch hub cache (``$TORCH_HOME/hub/checkpoints/<file>``); a download,
unless ``VISIONATLAS_OFFLINE`` is ``1``/``true``. Failures raise
:class:`~visionatlas.errors.PretrainedWeightsError` naming the file to provide and where.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torch import Tensor

from visionatlas.errors import PretrainedWeightsError
from visionatlas.models.backbones.weights import (
    fetch_torchvision_weights,
    read_state_dict,
    torchvision_weights,
)
from visionatlas.models.deferred_init import taking_weights
from visionatlas_detection.models import Detector

if TYPE_CHECKING:
    from torchvision.models import WeightsEnum

__all__ = ["Checkpoint", "fetch_checkpoint", "load_checkpoint"]

_SHOWN_KEYS = 5


@dataclass(frozen=True)
class Checkpoint:
    """A detector state dict, where it came from, and the torchvision weights it is (if any)."""

    state: dict[str, Tensor]
    source: str
    weights: WeightsEnum | None = None


def fetch_checkpoint(
    architecture: str,
    weights_ref: str | None,
    *,
    member: str | None = None,
    weights_path: Path | None = None,
) -> Checkpoint:
    """The full weights of ``architecture``: a local file, the hub cache, or a download."""
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        return Checkpoint(read_state_dict(path), str(path))
    if weights_ref is None:
        raise PretrainedWeightsError(
            f"architecture {architecture!r} has no published full-detector weights (there "
            "are no COCO weights for arbitrary backbones); pass a checkpoint of this "
            "architecture with weights_path, or set pretrained_scope='backbone' to load the "
            "backbone's ImageNet weights"
        )
    weights = torchvision_weights(weights_ref, member)
    state, source = fetch_torchvision_weights(
        weights,
        owner=f"architecture {architecture!r}",
        alternatives="pass a local weights file with weights_path (ModelConfig.weights_path)",
    )
    return Checkpoint(state, source, weights)


def load_checkpoint(model: Detector, checkpoint: Checkpoint, *, architecture: str) -> None:
    """Load a full checkpoint into ``model``, whatever number of classes it was trained for.

    When the checkpoint's class layers are sized for another ``num_classes`` (COCO's 91, say),
    everything else loads and the class-dependent layers are freshly initialised for the
    model's own ``num_classes`` (torchvision's fine-tuning recipe).
    """
    wanted = model.num_classes
    found = model.checkpoint_num_classes(checkpoint.state)
    if found is None:
        layer = model.class_layers()[0][0]
        raise PretrainedWeightsError(
            f"weights from {checkpoint.source} do not hold a {architecture} detector: there is "
            f"no class layer {layer!r} of a compatible shape. A file with only backbone "
            "weights loads with pretrained_scope='backbone'"
        )
    if found != wanted:
        model.reset_classes(found)
    try:
        with taking_weights():  # the checkpoint was read for this build
            result = model.load_state_dict(checkpoint.state, strict=False)
    except RuntimeError as err:
        raise PretrainedWeightsError(
            f"weights from {checkpoint.source} do not fit {architecture}: {err}"
        ) from err
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected:
        raise PretrainedWeightsError(
            f"weights from {checkpoint.source} do not match {architecture}: "
            f"{_keys('missing', missing)}; {_keys('unexpected', unexpected)}"
        )
    if found != wanted:
        model.reset_classes(wanted)


def _keys(label: str, keys: list[str]) -> str:
    if not keys:
        return f"no {label} keys"
    more = f", ... ({len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else ""
    return f"{len(keys)} {label} keys: {', '.join(keys[:_SHOWN_KEYS])}{more}"
