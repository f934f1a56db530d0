"""Lightning's checkpoints in the project's safe checkpoint format (no pickle).

:class:`VisionAtlasCheckpointIO` is a Lightning ``CheckpointIO`` plugin: every checkpoint
the Trainer writes (``checkpoints/last``, ``checkpoints/best``) becomes a
:func:`visionatlas.save_checkpoint` directory. The catalog model's weights are the
checkpoint's model file, with the build info that rebuilds it, so
``visionatlas.load_checkpoint(path)`` gives the trained model back; everything else in
Lightning's checkpoint dict (loops, optimizer and scheduler states, callbacks, precision
scaler) is the checkpoint's training ``state``, so ``trainer.fit(ckpt_path=path)``
resumes exactly where the run stopped. Loading verifies every checksum and unpickles
nothing, whatever ``weights_only`` says.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from torch import nn

from visionatlas.lifecycle.checkpoint import (
    MANIFEST_NAME,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from visionatlas.lifecycle.rebuild import build_info_of, rebuild_model

__all__ = ["EXTRA_KEY", "MODEL_PREFIX", "VisionAtlasCheckpointIO"]

MODEL_PREFIX = "model."
"""The catalog model's keys in the LightningModule's ``state_dict``."""
EXTRA_KEY = "visionatlas"
"""Key of the checkpoint dict holding ``{"metrics": ..., "extra": ...}`` for the manifest."""
_OTHER_WEIGHTS = "state_dict_other"


class VisionAtlasCheckpointIO(CheckpointIO):
    """Write and read Lightning checkpoints as visionatlas checkpoint directories.

    ``model`` is the catalog model the LightningModule holds as ``model``: its build info
    goes into every checkpoint. Weights are taken from the checkpoint dict, never from the
    live module, so a strategy that gathers them (FSDP's full state dict) saves correctly.
    """

    def __init__(self, model: nn.Module) -> None:
        info = build_info_of(model)
        if info is None:
            raise CheckpointError(
                "the model was not built by visionatlas (it has no build info), so a "
                "checkpoint could not rebuild it; build it with visionatlas.create_model"
            )
        self._model = model
        self._info = info

    def _skeleton(self) -> nn.Module:
        """The model's architecture on the meta device: no memory, no initialisation."""
        with torch.device("meta"):
            skeleton = rebuild_model(self._info, what="the model being trained")
        object.__setattr__(skeleton, "visionatlas_info", self._info)
        return skeleton

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        state = dict(checkpoint)
        weights: dict[str, Any] = dict(state.pop("state_dict", {}))
        record = state.pop(EXTRA_KEY, None) or {}
        model_weights = {
            key[len(MODEL_PREFIX) :]: value
            for key, value in weights.items()
            if key.startswith(MODEL_PREFIX)
        }
        other = {k: v for k, v in weights.items() if not k.startswith(MODEL_PREFIX)}
        if other:
            state[_OTHER_WEIGHTS] = other
        skeleton = self._skeleton()
        try:
            skeleton.load_state_dict(model_weights, strict=True, assign=True)
        except RuntimeError as err:
            raise CheckpointError(
                f"the checkpoint's weights do not fit the model being trained: {err}"
            ) from err
        epoch = state.get("epoch")
        save_checkpoint(
            skeleton,
            epoch=None if epoch is None else int(epoch) + 1,  # epochs completed
            metrics=record.get("metrics") or {},
            path=Path(path),
            extra=record.get("extra") or {},
            state=state,
        )

    def load_checkpoint(
        self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        directory = Path(path)
        if not (directory / MANIFEST_NAME).is_file():
            raise FileNotFoundError(f"no visionatlas checkpoint at {directory}")
        skeleton = self._skeleton()
        skeleton.to_empty(device="cpu")
        loaded = load_checkpoint(directory, skeleton)
        if not isinstance(loaded.state, dict):
            raise CheckpointError(
                f"{directory} holds no training state (it was not written by a training "
                "run), so a run cannot resume from it",
                path=directory,
            )
        checkpoint: dict[str, Any] = dict(loaded.state)
        other = checkpoint.pop(_OTHER_WEIGHTS, None) or {}
        weights = {MODEL_PREFIX + k: v for k, v in skeleton.state_dict().items()}
        checkpoint["state_dict"] = {**weights, **other}
        checkpoint[EXTRA_KEY] = {"metrics": loaded.metrics, "extra": loaded.extra}
        return checkpoint

    def remove_checkpoint(self, path: Any) -> None:
        target = Path(path)
        if (target / MANIFEST_NAME).is_file():
            shutil.rmtree(target)
        elif target.is_file():
            target.unlink()
