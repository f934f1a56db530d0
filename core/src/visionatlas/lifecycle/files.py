"""Crash-safe file writing and checksums, shared by checkpoints and the model registry.

A file is written under a temporary name in its final directory, flushed and fsynced, then
moved into place with :func:`os.replace` (atomic on POSIX and Windows), and the directory
is fsynced so that the rename itself survives a power loss. A crash leaves either the old
file or the new one, never a mixture; at worst a stray temporary file remains.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "STALE_TEMP_SECONDS",
    "TEMP_PREFIX",
    "WrittenFile",
    "atomic_target",
    "directory_lock",
    "fsync_directory",
    "fsync_file",
    "is_temp_name",
    "remove_stale_temps",
    "sha256_file",
    "write_bytes_atomic",
    "write_temp",
]

TEMP_PREFIX = ".tmp-"
"""Prefix of temporary files; anything so named may be left over from a crash."""

STALE_TEMP_SECONDS = 3600.0
"""Age after which a temporary file is taken for a crash's leftover and removed."""

_CHUNK = 1 << 20
_FOREIGN_TEMP = re.compile(r"^\.tmp[A-Za-z0-9]{6}$")  # safetensors' own (Rust tempfile)


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is a temporary file of ours or one safetensors writes itself."""
    return name.startswith(TEMP_PREFIX) or bool(_FOREIGN_TEMP.match(name))


def remove_stale_temps(
    directory: Path, *, min_age: float = STALE_TEMP_SECONDS, keep: tuple[str, ...] = ()
) -> list[Path]:
    """Delete temporary files in ``directory`` older than ``min_age`` seconds.

    Both our temporaries (:data:`TEMP_PREFIX`) and those safetensors writes beside its
    target (``.tmpXXXXXX``) are collected; names starting with a prefix in ``keep`` are
    left alone. Returns the removed paths.
    """
    cutoff = time.time() - min_age
    removed: list[Path] = []
    try:
        candidates = sorted(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for path in candidates:
        if not is_temp_name(path.name) or (keep and path.name.startswith(keep)):
            continue
        try:
            stale = path.is_file() and path.stat().st_mtime < cutoff
        except FileNotFoundError:  # removed meanwhile by another process
            continue
        if stale:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush a file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(path: str | os.PathLike[str]) -> None:
    """Persist renames and deletions in ``path`` (a no-op where directories cannot be opened)."""
    if os.name == "nt":  # Windows cannot fsync a directory handle; NTFS journals renames
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_target(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success fsync it and move it into place.

    The caller writes the file at the yielded path (with any library). If the block
    raises, the temporary file is removed and ``final`` is untouched.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{final.name}.", dir=final.parent)
    os.close(fd)
    temp = Path(name)
    try:
        yield temp
        fsync_file(temp)
        os.replace(temp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    fsync_directory(final.parent)


def write_bytes_atomic(final: Path, data: bytes) -> None:
    """Replace ``final`` with ``data`` atomically."""
    with atomic_target(final) as temp:
        temp.write_bytes(data)


@dataclass(frozen=True)
class WrittenFile:
    """A fully written and fsynced temporary file, with its checksum and size."""

    path: Path
    sha256: str
    size: int

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def write_temp(
    directory: Path, write: Callable[[Path], None], *, label: str = "file"
) -> WrittenFile:
    """Call ``write(path)`` on a new temporary path in ``directory``; fsync and hash it.

    The caller moves the file into place (its final name may depend on the checksum) or
    calls :meth:`WrittenFile.discard`. If ``write`` raises, the temporary file is removed.
    """
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{label}.", dir=directory)
    os.close(fd)
    temp = Path(name)
    try:
        write(temp)
        fsync_file(temp)
        return WrittenFile(temp, sha256_file(temp), temp.stat().st_size)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise


@contextlib.contextmanager
def directory_lock(directory: Path, name: str = ".lock", *, shared: bool = False) -> Iterator[bool]:
    """Hold an advisory lock on ``directory/name`` (POSIX ``flock``): exclusive for writers,
    ``shared`` for readers, who then never see a writer's half-finished change.

    Yields whether the lock is held: ``False`` where ``fcntl`` is missing (Windows) or, for
    a shared lock, where the lock file cannot be opened (a read-only directory), so callers
    skip what is only safe under the lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield False
        return
    path = directory / name
    if shared:
        try:
            fd = _open_lock_file(path)
        except OSError:  # read-only directory or medium: nobody can be writing there
            yield False
            return
    else:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield True
    finally:
        os.close(fd)  # closing releases the lock


def _open_lock_file(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
