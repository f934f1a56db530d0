"""What a checkpoint directory is: names, errors, and the sealed manifest and its checks.

Shared by saving (:mod:`visionatlas.lifecycle.checkpoint`) and loading
(:mod:`visionatlas.lifecycle.checkpoint_load`). The manifest carries a SHA-256 of its own
content, and every data file it lists is named after, and checked against, its SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionatlas.catalog import BuildInfo
from visionatlas.errors import VisionAtlasError
from visionatlas.lifecycle.files import sha256_file
from visionatlas.lifecycle.rebuild import Requirement

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "DATA_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "LOCK_NAME",
    "MANIFEST_NAME",
    "Checkpoint",
    "CheckpointBusyError",
    "CheckpointError",
    "CorruptCheckpointError",
    "checkpoint_dir",
    "qualname",
    "read_manifest",
    "seal",
    "verify_file",
]

FORMAT = "visionatlas.lifecycle.checkpoint"
FORMAT_VERSION = 1
MANIFEST_NAME = "checkpoint.json"
LOCK_NAME = ".checkpoint.lock"
DATA_FILE = re.compile(r"^(model|state)-[0-9a-f]{16}\.safetensors$")
"""Names of the data files: ``<role>-<first 16 hex digits of the SHA-256>.safetensors``."""
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


def qualname(obj: Any) -> str:
    """The qualified name of ``obj``'s class, as recorded for optimizers and schedulers."""
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _digest(manifest: Mapping[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def seal(manifest: dict[str, Any]) -> bytes:
    """The manifest's file content, with the SHA-256 of the rest of it added."""
    manifest["manifest_sha256"] = _digest(manifest)
    text = json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False)
    return (text + "\n").encode("utf-8")


def checkpoint_dir(path: str | os.PathLike[str]) -> Path:
    """The checkpoint directory ``path`` names (or whose manifest it names); else raise."""
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


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of ``directory``, checked: ours, a readable version, sealed."""
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


def verify_file(directory: Path, record: Any, role: str) -> Path:
    """The data file a manifest ``record`` lists, checked against its size and SHA-256."""
    manifest_file = directory / MANIFEST_NAME
    if not isinstance(record, dict) or not DATA_FILE.match(str(record.get("name", ""))):
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
