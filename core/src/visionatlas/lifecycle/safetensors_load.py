"""Load a safetensors weight file into a model, taking the tensors where it can."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

__all__ = ["load_safetensors"]


def load_safetensors(
    model: nn.Module, path: str | Path, *, strict: bool = True, device: str = "cpu"
) -> None:
    """Load the file at ``path`` into ``model``, as ``safetensors.torch.load_model`` does.

    A model built under :func:`~visionatlas.models.deferred_init.deferred_init` takes the
    file's tensors in place of its placeholders; keys it lacks stay placeholders, so
    :func:`~visionatlas.models.deferred_init.construct_and_load` builds it again the ordinary
    way (which also handles files that store a shared tensor once). ``RuntimeError`` names
    unexpected and missing keys when ``strict``.
    """
    import safetensors.torch

    from visionatlas.models.deferred_init import placeholders, taking_weights

    if not placeholders(model):
        safetensors.torch.load_model(model, str(path), strict=strict, device=device)
        return
    state = safetensors.torch.load_file(str(path), device=device)
    with taking_weights():  # read for this load only
        result = model.load_state_dict(state, strict=False)
    if strict and result.unexpected_keys and not result.missing_keys:
        raise RuntimeError(
            f"Error(s) in loading state_dict for {type(model).__name__}: unexpected keys "
            f"{', '.join(result.unexpected_keys)}"
        )
