"""Training checkpoints that load without executing code, verified and written atomically.

A checkpoint is a **directory** (``path``), holding:

``checkpoint.json``
    The manifest: format and version, epoch, metrics, the model's build info, the
    optimizer's and scheduler's state structure, library versions, and the name, size and
    SHA-256 of every data file. It carries a SHA-256 of its own content.
``model-<sha>.safetensors``
    The model's ``state_dict`` (tied weights stored once).
``state-<sha>.safetensors``
    The tensors of the optimizer's and scheduler's state and of the training ``state``
    (``save_checkpoint(..., state=...)``), if any.

Data files are named after their checksum and written before the manifest; replacing the
manifest (``os.replace``) is the commit. A save that dies halfway leaves the previous
manifest and the files it names intact, so the previous checkpoint still loads; files of
the replaced checkpoint are removed after the commit. Loading verifies every checksum and
unpickles nothing.
"""

from __future__ import annotations

import datetime as _dt
import json
import numbers
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionatlas.catalog import BuildInfo
from visionatlas.lifecycle._statecodec import StateCodecError, encode_state, json_values
from visionatlas.lifecycle.checkpoint_format import (
    DATA_FILE,
    FORMAT,
    FORMAT_VERSION,
    LOCK_NAME,
    MANIFEST_NAME,
    Checkpoint,
    CheckpointBusyError,
    CheckpointError,
    CorruptCheckpointError,
    qualname,
    seal,
)
from visionatlas.lifecycle.checkpoint_load import load_checkpoint, read_checkpoint
from visionatlas.lifecycle.files import (
    TEMP_PREFIX,
    WrittenFile,
    directory_lock,
    fsync_directory,
    remove_stale_temps,
    write_bytes_atomic,
    write_temp,
)
from visionatlas.lifecycle.rebuild import build_info_of, build_info_to_dict, requirements

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "Checkpoint",
    "CheckpointBusyError",
    "CheckpointError",
    "CorruptCheckpointError",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
]


def save_checkpoint(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    epoch: int | None = None,
    metrics: Mapping[str, Any] | None = None,
    path: str | os.PathLike[str] | None = None,
    *,
    scheduler: Any = None,
    extra: Mapping[str, Any] | None = None,
    state: Any = None,
) -> Path:
    """Save ``model`` (and optionally its optimizer and LR scheduler) to directory ``path``.

    ``metrics`` and ``extra`` are JSON values (numbers, strings, lists, dicts; 0-d tensors
    become numbers). ``state`` is any further training state, such as a training loop's
    whole checkpoint dict: nested dicts, lists and tuples of numbers, strings, booleans,
    ``None`` and tensors of any shape, stored without pickling (its tensors beside the
    optimizer's) and returned as :attr:`Checkpoint.state` by :func:`load_checkpoint`.
    The save is atomic: until it completes, ``path`` keeps its previous checkpoint, if any.
    ``path`` is required (it has a default only so that it may follow the optional
    arguments). Returns the checkpoint directory.
    """
    if path is None:
        raise TypeError("save_checkpoint() needs path=..., the checkpoint directory")
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(
            f"cannot save a checkpoint to {directory}: it is a file; a checkpoint is a "
            f"directory holding {MANIFEST_NAME}",
            path=directory,
        )
    if epoch is not None and not _is_int(epoch):
        raise CheckpointError(f"epoch must be an int or None, got {epoch!r}")
    directory.mkdir(parents=True, exist_ok=True)
    with directory_lock(directory, LOCK_NAME) as locked:
        _save(directory, model, optimizer, epoch, metrics, scheduler, extra, state, sweep=locked)
    return directory


def _save(
    directory: Path,
    model: nn.Module,
    optimizer: Any,
    epoch: int | None,
    metrics: Mapping[str, Any] | None,
    scheduler: Any,
    extra: Mapping[str, Any] | None,
    state: Any,
    *,
    sweep: bool,
) -> None:
    """Write the data files, then commit the manifest; hold the directory lock."""
    previous = _previous_files(directory)
    info = build_info_of(model)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "epoch": None if epoch is None else int(epoch),
        "metrics": _json_values(metrics or {}, "metrics"),
        "extra": _json_values(extra or {}, "extra"),
        "build_info": None if info is None else build_info_to_dict(info),
        "requires": [] if info is None else [r.as_dict() for r in requirements(info)],
        "versions": _versions(info),
        "optimizer": None,
        "scheduler": None,
        "files": {},
    }
    state_tensors: dict[str, Tensor] = {}
    for key, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
        if obj is None:
            continue
        try:
            structure, tensors = encode_state(obj.state_dict(), key)
        except StateCodecError as err:
            raise CheckpointError(f"cannot save the {key} state: {err}") from err
        manifest[key] = {"class": qualname(obj), "structure": structure}
        state_tensors.update(tensors)
    if state is not None:
        try:
            structure, tensors = encode_state(state, "training")
        except StateCodecError as err:
            raise CheckpointError(f"cannot save the training state: {err}") from err
        manifest["state"] = structure
        state_tensors.update(tensors)
    writers = {"model": lambda p: _save_model(model, p)}
    if state_tensors:
        writers["state"] = lambda p: _save_tensors(state_tensors, p)
    placed: list[str] = []
    try:
        for role, write in writers.items():
            temp = write_temp(directory, write, label=role)
            name = _place(temp, directory, role)
            placed.append(name)
            manifest["files"][role] = {"name": name, "sha256": temp.sha256, "size": temp.size}
    except BaseException:
        for name in placed:
            if name not in previous:
                (directory / name).unlink(missing_ok=True)
        raise
    write_bytes_atomic(directory / MANIFEST_NAME, seal(manifest))  # the commit
    for name in previous - set(placed):
        (directory / name).unlink(missing_ok=True)
    if sweep:  # under the lock: leftovers of saves that crashed are nobody's
        for leftover in directory.iterdir():
            stray = DATA_FILE.match(leftover.name) and leftover.name not in placed
            if stray or leftover.name.startswith(TEMP_PREFIX):
                leftover.unlink(missing_ok=True)
    remove_stale_temps(directory)  # safetensors' own temporaries, by age
    fsync_directory(directory)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _save_model(model: nn.Module, path: Path) -> None:
    import safetensors.torch

    safetensors.torch.save_model(model, str(path), metadata={"format": "pt"}, force_contiguous=True)


def _save_tensors(tensors: Mapping[str, Tensor], path: Path) -> None:
    import safetensors.torch

    seen: set[int] = set()
    unshared: dict[str, Tensor] = {}
    for key, tensor in tensors.items():  # safetensors refuses tensors sharing memory
        t = tensor.detach().cpu().contiguous()
        pointer = t.untyped_storage().data_ptr() if t.numel() else 0
        if pointer and pointer in seen:
            t = t.clone()
        seen.add(pointer)
        unshared[key] = t
    safetensors.torch.save_file(unshared, str(path), metadata={"format": "pt"})


def _place(temp: WrittenFile, directory: Path, role: str) -> str:
    name = f"{role}-{temp.sha256[:16]}.safetensors"
    os.replace(temp.path, directory / name)
    return name


def _previous_files(directory: Path) -> set[str]:
    """Data files named by the current manifest (removed once a new save commits)."""
    try:
        manifest = json.loads((directory / MANIFEST_NAME).read_text(encoding="utf-8"))
        files = manifest["files"].values()
        return {f["name"] for f in files if DATA_FILE.match(str(f["name"]))}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()


def _versions(info: BuildInfo | None) -> dict[str, str]:
    import torch

    from visionatlas import __version__

    versions = {
        "visionatlas": __version__,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
    }
    if info is not None and info.distribution and info.version:
        versions[info.distribution] = info.version
    return versions


def _json_values(value: Any, where: str) -> Any:
    try:
        return json_values(value, where)
    except StateCodecError as err:
        raise CheckpointError(str(err)) from err
