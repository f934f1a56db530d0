"""Reading and loading checkpoints, consistently while another process saves.

Loading verifies every checksum first and unpickles nothing. Readers hold the checkpoint
directory's lock shared, so no save replaces the manifest while they read it; where the
lock cannot be taken, a read that races a save is retried.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionatlas.lifecycle._statecodec import StateCodecError, decode_state
from visionatlas.lifecycle.checkpoint_format import (
    LOCK_NAME,
    MANIFEST_NAME,
    Checkpoint,
    CheckpointBusyError,
    CheckpointError,
    CorruptCheckpointError,
    checkpoint_dir,
    qualname,
    read_manifest,
    verify_file,
)
from visionatlas.lifecycle.files import directory_lock
from visionatlas.lifecycle.rebuild import Requirement, build_info_from_dict, rebuild_model
from visionatlas.lifecycle.safetensors_load import load_safetensors

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["load_checkpoint", "read_checkpoint"]


def _summary(
    directory: Path, manifest: dict[str, Any], model: nn.Module | None, state: Any = None
) -> Checkpoint:
    info_data = manifest.get("build_info")
    try:
        info = None if info_data is None else build_info_from_dict(info_data)
    except ValueError as err:
        raise CheckpointError(
            f"{directory / MANIFEST_NAME}: {err}", path=directory / MANIFEST_NAME
        ) from err
    return Checkpoint(
        path=directory,
        epoch=manifest.get("epoch"),
        metrics=dict(decode_state(manifest.get("metrics") or {}, {})),
        build_info=info,
        created_at=str(manifest.get("created_at", "")),
        versions=dict(manifest.get("versions") or {}),
        extra=dict(decode_state(manifest.get("extra") or {}, {})),
        requires=tuple(Requirement.from_dict(r) for r in manifest.get("requires") or ()),
        files=dict(manifest.get("files") or {}),
        model=model,
        optimizer_class=(manifest.get("optimizer") or {}).get("class"),
        scheduler_class=(manifest.get("scheduler") or {}).get("class"),
        state=state,
    )


def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and verify a checkpoint's manifest and files, without loading any tensor."""
    directory = checkpoint_dir(path)

    def read(manifest: dict[str, Any]) -> Checkpoint:
        for role, record in (manifest.get("files") or {}).items():
            verify_file(directory, record, role)
        return _summary(directory, manifest, None)

    return _consistent(directory, read)


def load_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    scheduler: Any = None,
    map_location: str | torch.device = "cpu",
    strict: bool = True,
) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint` from directory ``path``.

    Weights go into ``model``; without one, the model is rebuilt through the catalog from
    the stored build info. ``optimizer`` and ``scheduler``, when given, get their stored
    state. Every file's checksum is verified first: a truncated or modified file raises
    :class:`CorruptCheckpointError` naming it. A load racing a save in another process
    gets the checkpoint as it was before that save or after it, never a mixture. Returns
    the epoch, metrics and the model.
    """
    directory = checkpoint_dir(path)
    return _consistent(
        directory,
        lambda manifest: _load(
            directory, manifest, model, optimizer, scheduler, map_location, strict
        ),
    )


_READ_ATTEMPTS = 5


def _consistent(directory: Path, read: Callable[[dict[str, Any]], Checkpoint]) -> Checkpoint:
    """Run ``read`` on the current manifest with no save able to replace it meanwhile.

    Readers hold the directory's lock shared (savers hold it exclusively). Where it cannot
    be taken, a read that finds files missing or changed while the manifest was replaced
    is retried, then :class:`CheckpointBusyError` is raised.
    """
    with directory_lock(directory, LOCK_NAME, shared=True) as locked:
        if locked:
            return read(read_manifest(directory))
        for _ in range(_READ_ATTEMPTS):
            before = _manifest_stamp(directory)
            try:
                return read(read_manifest(directory))
            except CheckpointError:  # a file missing, or gone while safetensors opened it
                if _manifest_stamp(directory) == before:  # no save meanwhile: a real error
                    raise
    raise CheckpointBusyError(
        f"checkpoint {directory} was replaced by other saves while it was read, "
        f"{_READ_ATTEMPTS} times in a row; try again when the saving process pauses",
        path=directory,
    )


def _manifest_stamp(directory: Path) -> tuple[int, int, int]:
    """Changes whenever a save commits (the manifest is replaced by another file)."""
    stat = (directory / MANIFEST_NAME).stat()
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _load(
    directory: Path,
    manifest: dict[str, Any],
    model: nn.Module | None,
    optimizer: Any,
    scheduler: Any,
    map_location: Any,
    strict: bool,
) -> Checkpoint:
    import safetensors.torch

    files = manifest.get("files") or {}
    if "model" not in files:
        raise CorruptCheckpointError(
            f"{directory / MANIFEST_NAME} lists no model file", path=directory / MANIFEST_NAME
        )
    model_file = verify_file(directory, files["model"], "model")
    state_file = verify_file(directory, files["state"], "state") if "state" in files else None
    summary = _summary(directory, manifest, None)

    def load(target: nn.Module) -> None:
        try:
            load_safetensors(target, model_file, strict=strict, device=str(map_location))
        except FileNotFoundError as err:
            raise CorruptCheckpointError(
                f"checkpoint file {err.filename or model_file} disappeared while loading",
                path=model_file,
            ) from err
        except RuntimeError as err:
            raise CheckpointError(
                f"the weights in {model_file} do not fit the model: {err}", path=model_file
            ) from err

    if model is None:
        from visionatlas.models.deferred_init import construct_and_load

        info = summary.build_info
        if info is None:
            raise CheckpointError(
                f"checkpoint {directory} records no build info (the model was not built by "
                "visionatlas); pass model=... to load its weights into",
                path=directory,
            )
        model = construct_and_load(
            lambda: rebuild_model(info, needs=summary.requires, what=f"checkpoint {directory}"),
            load,
        )
    else:
        load(model)
    try:
        tensors = safetensors.torch.load_file(str(state_file)) if state_file else {}
    except FileNotFoundError as err:
        raise CorruptCheckpointError(
            f"checkpoint file {err.filename or state_file} disappeared while loading",
            path=state_file,
        ) from err
    for key, target in (("optimizer", optimizer), ("scheduler", scheduler)):
        if target is None:
            continue
        stored = manifest.get(key)
        if stored is None:
            raise CheckpointError(f"checkpoint {directory} holds no {key} state", path=directory)
        if stored.get("class") != qualname(target):
            raise CheckpointError(
                f"checkpoint {directory} holds the state of a {stored.get('class')}, not of a "
                f"{qualname(target)}",
                path=directory,
            )
        try:
            target.load_state_dict(decode_state(stored["structure"], tensors))
        except (StateCodecError, ValueError, KeyError, RuntimeError) as err:
            raise CheckpointError(
                f"cannot restore the {key} state from {directory}: {err}", path=directory
            ) from err
    state = None
    if manifest.get("state") is not None:
        try:
            state = decode_state(manifest["state"], tensors)
        except StateCodecError as err:
            raise CorruptCheckpointError(
                f"cannot restore the training state from {directory}: {err}", path=directory
            ) from err
    return _summary(directory, manifest, model, state)
