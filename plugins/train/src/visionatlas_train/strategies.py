"""FSDP with checkpoints in the project's safe format.

Lightning's ``FSDPStrategy`` writes a full-state checkpoint through its ``CheckpointIO``
but refuses a checkpoint path that is a directory, and reads one back with
``torch.load`` (pickle), bypassing the ``CheckpointIO``. This subclass keeps FSDP's own
gathering of the full model and optimizer state (``state_dict_type="full"``) and routes
both directions through :class:`~visionatlas_train.checkpoint_io.VisionAtlasCheckpointIO`,
restoring the state as Lightning's full-checkpoint branch does. FSDP needs a GPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from lightning.pytorch.strategies import FSDPStrategy

__all__ = ["safe_fsdp_strategy"]


class SafeFSDPStrategy(FSDPStrategy):
    """``FSDPStrategy(state_dict_type="full")`` saving and loading through its CheckpointIO."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], filepath: Any, storage_options: Any | None = None
    ) -> None:
        path = Path(self.broadcast(filepath))
        if self.is_global_zero:  # the full state was gathered on rank 0
            self.checkpoint_io.save_checkpoint(checkpoint, path, storage_options=storage_options)

    def load_checkpoint(
        self, checkpoint_path: Any, weights_only: bool | None = None
    ) -> dict[str, Any]:
        from lightning.fabric.strategies.fsdp import _get_full_state_dict_context
        from lightning.fabric.strategies.model_parallel import _load_raw_module_state
        from lightning.pytorch.trainer.states import TrainerFn
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        from torch.distributed.fsdp import OptimStateKeyType

        if self.model is None or self.lightning_module is None:
            raise RuntimeError("the FSDP strategy loads a checkpoint only once set up")
        path = Path(self.broadcast(checkpoint_path))
        checkpoint = self.checkpoint_io.load_checkpoint(path)
        _load_raw_module_state(
            checkpoint.pop("state_dict"),
            module=self.model,
            world_size=self.world_size,
            strict=self.lightning_module.strict_loading,
        )
        states = checkpoint.get("optimizer_states")
        fitting = self.lightning_module.trainer.state.fn == TrainerFn.FITTING
        if states is None or not fitting:
            return checkpoint
        if len(self.optimizers) != len(states):
            raise RuntimeError(
                f"the checkpoint holds {len(states)} optimizer states for "
                f"{len(self.optimizers)} optimizers"
            )
        context: Any = _get_full_state_dict_context(
            self.model, world_size=self.world_size, rank0_only=False
        )
        with context:
            for optimizer, state in zip(self.optimizers, states, strict=True):
                if state["state"] and isinstance(next(iter(state["state"])), int):
                    state = FSDP.rekey_optim_state_dict(
                        state, OptimStateKeyType.PARAM_NAME, self.model
                    )
                optimizer.load_state_dict(
                    FSDP.optim_state_dict_to_load(
                        optim_state_dict=state, model=self.model, optim=optimizer
                    )
                )
        return checkpoint


def safe_fsdp_strategy(checkpoint_io: CheckpointIO) -> SafeFSDPStrategy:
    """An FSDP strategy (full state dicts) writing checkpoints with ``checkpoint_io``."""
    return SafeFSDPStrategy(state_dict_type="full", checkpoint_io=checkpoint_io)
