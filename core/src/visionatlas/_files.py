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
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "TEMP_PREFIX",
    "WrittenFile",
    "atomic_target",
    "directory_lock",
    "fsync_directory",
    "fsync_file",
    "sha256_file",
    "write_bytes_atomic",
    "write_temp",
]

TEMP_PREFIX = ".tmp-"
"""Prefix of temporary files; anything so named may be left over from a crash."""

_CHUNK = 1 << 20


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
def directory_lock(directory: Path, name: str = ".lock") -> Iterator[bool]:
    """Hold an exclusive advisory lock on ``directory/name`` (POSIX ``flock``).

    Yields whether the lock is held: ``False`` where ``fcntl`` is missing (Windows), so
    callers skip what is only safe under the lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield False
        return
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / name, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield True
    finally:
        os.close(fd)  # closing releases the lock
