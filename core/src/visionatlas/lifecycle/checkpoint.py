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
import hashlib
import json
import numbers
import os
import platform
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionatlas.catalog import BuildInfo
from visionatlas.errors import VisionAtlasError
from visionatlas.lifecycle._statecodec import (
    StateCodecError,
    decode_state,
    encode_state,
    json_values,
)
from visionatlas.lifecycle.files import (
    TEMP_PREFIX,
    WrittenFile,
    directory_lock,
    fsync_directory,
    remove_stale_temps,
    sha256_file,
    write_bytes_atomic,
    write_temp,
)
from visionatlas.lifecycle.rebuild import (
    Requirement,
    build_info_from_dict,
    build_info_of,
    build_info_to_dict,
    rebuild_model,
    requirements,
)

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

FORMAT = "visionatlas.lifecycle.checkpoint"
FORMAT_VERSION = 1
MANIFEST_NAME = "checkpoint.json"
LOCK_NAME = ".checkpoint.lock"
_DATA_FILE = re.compile(r"^(model|state)-[0-9a-f]{16}\.safetensors$")
_FOREIGN_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".pkl", ".tar", ".zip")


class CheckpointError(VisionAtlasError, ValueError):
    """A checkpoint cannot be written or read (not ours, wrong model, unsupported state)."""

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        self.path = path
        super().__init__(message)


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file is truncated or was modified after saving (checksum mismatch)."""


class CheckpointBusyError(CheckpointError):
    """Saves replaced the checkpoint while it was being read, every time it was tried.

    Only where the directory cannot be locked (a read-only directory, Windows); retryable.
    """


@dataclass(frozen=True)
class Checkpoint:
    """What :func:`load_checkpoint` (or :func:`read_checkpoint`) found in a checkpoint."""

    path: Path
    epoch: int | None
    metrics: dict[str, Any]
    build_info: BuildInfo | None
    created_at: str
    versions: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)
    requires: tuple[Requirement, ...] = ()
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    model: nn.Module | None = None
    optimizer_class: str | None = None
    scheduler_class: str | None = None
    state: Any = None
    """The training state given to ``save_checkpoint(state=...)`` (nested dicts, lists,
    tuples, numbers, strings and tensors), restored by :func:`load_checkpoint`; ``None``
    if there was none (and always from :func:`read_checkpoint`, which loads no tensor)."""


# -- saving -----------------------------------------------------------------------------------
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
        manifest[key] = {"class": _qualname(obj), "structure": structure}
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
    write_bytes_atomic(directory / MANIFEST_NAME, _seal(manifest))  # the commit
    for name in previous - set(placed):
        (directory / name).unlink(missing_ok=True)
    if sweep:  # under the lock: leftovers of saves that crashed are nobody's
        for leftover in directory.iterdir():
            stray = _DATA_FILE.match(leftover.name) and leftover.name not in placed
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
        return {f["name"] for f in files if _DATA_FILE.match(str(f["name"]))}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()


def _qualname(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


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


def _digest(manifest: Mapping[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _seal(manifest: dict[str, Any]) -> bytes:
    manifest["manifest_sha256"] = _digest(manifest)
    text = json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False)
    return (text + "\n").encode("utf-8")


# -- reading ----------------------------------------------------------------------------------
def _checkpoint_dir(path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    if target.is_file() and target.name == MANIFEST_NAME:
        return target.parent
    if target.is_file():
        hint = ""
        if target.suffix.lower() in _FOREIGN_SUFFIXES:
            hint = (
                "; plain weight files load with "
                "visionatlas.models.backbones.weights.read_state_dict (or a model config's "
                "weights_path)"
            )
        raise CheckpointError(
            f"{target} is a file, not a visionatlas checkpoint: save_checkpoint writes a "
            f"directory holding {MANIFEST_NAME}{hint}",
            path=target,
        )
    if not target.is_dir():
        raise CheckpointError(f"no checkpoint at {target}: no such directory", path=target)
    if not (target / MANIFEST_NAME).is_file():
        raise CheckpointError(
            f"{target} is not a visionatlas checkpoint: it has no {MANIFEST_NAME} (a save "
            "into it may never have completed)",
            path=target,
        )
    return target


def _read_manifest(directory: Path) -> dict[str, Any]:
    file = directory / MANIFEST_NAME
    raw = file.read_bytes()
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise CorruptCheckpointError(
            f"cannot read {file}: it is not valid JSON ({err}); the file is truncated or "
            "not a visionatlas checkpoint manifest",
            path=file,
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise CheckpointError(
            f"{file} is not a visionatlas checkpoint manifest (format {found!r}, expected "
            f"{FORMAT!r})",
            path=file,
        )
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{file} has checkpoint format version {version!r}; this visionatlas reads "
            f"versions up to {FORMAT_VERSION}: upgrade visionatlas",
            path=file,
        )
    if manifest.get("manifest_sha256") != _digest(manifest):
        raise CorruptCheckpointError(
            f"checksum mismatch in {file}: the manifest was modified after saving",
            path=file,
        )
    return manifest


def _verify_file(directory: Path, record: Any, role: str) -> Path:
    manifest_file = directory / MANIFEST_NAME
    if not isinstance(record, dict) or not _DATA_FILE.match(str(record.get("name", ""))):
        raise CorruptCheckpointError(
            f"{manifest_file} has a malformed {role} file entry", path=manifest_file
        )
    file = directory / record["name"]
    try:
        size = file.stat().st_size
        digest = sha256_file(file)
    except FileNotFoundError:
        raise CorruptCheckpointError(
            f"checkpoint file {file} is missing (listed in {MANIFEST_NAME})", path=file
        ) from None
    if size != record.get("size") or digest != record.get("sha256"):
        raise CorruptCheckpointError(
            f"checkpoint file {file} is corrupt: expected {record.get('size')} bytes with "
            f"SHA-256 {record.get('sha256')}, found {size} bytes with SHA-256 {digest} "
            "(truncated or modified after saving)",
            path=file,
        )
    return file


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
    directory = _checkpoint_dir(path)

    def read(manifest: dict[str, Any]) -> Checkpoint:
        for role, record in (manifest.get("files") or {}).items():
            _verify_file(directory, record, role)
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
    directory = _checkpoint_dir(path)
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
            return read(_read_manifest(directory))
        for _ in range(_READ_ATTEMPTS):
            before = _manifest_stamp(directory)
            try:
                return read(_read_manifest(directory))
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
    model_file = _verify_file(directory, files["model"], "model")
    state_file = _verify_file(directory, files["state"], "state") if "state" in files else None
    summary = _summary(directory, manifest, None)
    if model is None:
        if summary.build_info is None:
            raise CheckpointError(
                f"checkpoint {directory} records no build info (the model was not built by "
                "visionatlas); pass model=... to load its weights into",
                path=directory,
            )
        model = rebuild_model(
            summary.build_info, needs=summary.requires, what=f"checkpoint {directory}"
        )
    try:
        safetensors.torch.load_model(
            model, str(model_file), strict=strict, device=str(map_location)
        )
        tensors = safetensors.torch.load_file(str(state_file)) if state_file else {}
    except FileNotFoundError as err:
        raise CorruptCheckpointError(
            f"checkpoint file {err.filename or model_file} disappeared while loading",
            path=model_file,
        ) from err
    except RuntimeError as err:
        raise CheckpointError(
            f"the weights in {model_file} do not fit the model: {err}", path=model_file
        ) from err
    for key, target in (("optimizer", optimizer), ("scheduler", scheduler)):
        if target is None:
            continue
        stored = manifest.get(key)
        if stored is None:
            raise CheckpointError(f"checkpoint {directory} holds no {key} state", path=directory)
        if stored.get("class") != _qualname(target):
            raise CheckpointError(
                f"checkpoint {directory} holds the state of a {stored.get('class')}, not of a "
                f"{_qualname(target)}",
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
