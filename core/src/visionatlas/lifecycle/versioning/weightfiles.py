"""The weight files of a registry directory and their garbage collection.

``weights/<sha256>.safetensors`` holds each distinct set of weights once, named by its
SHA-256. A file is written and fsynced in ``tmp/`` outside the index's write lock, then
moved into ``weights/`` inside the transaction that inserts its row. A file leaves
``weights/`` only after the commit that dropped its last row, under the write lock, so a
process killed at any step leaves every entry loadable, at worst with an unused file that
:meth:`WeightFiles.collect_garbage` removes.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from visionatlas.lifecycle.files import (
    STALE_TEMP_SECONDS,
    TEMP_PREFIX,
    WrittenFile,
    fsync_directory,
    remove_stale_temps,
    sha256_file,
    write_temp,
)
from visionatlas.lifecycle.versioning import index
from visionatlas.lifecycle.versioning.errors import RegistryError
from visionatlas.lifecycle.versioning.rows import SHA256

if TYPE_CHECKING:
    from torch import nn

__all__ = ["MOVED_ASIDE", "WeightFiles"]

MOVED_ASIDE = f"{TEMP_PREFIX}trash."
"""Prefix of weight files that visionatlas 0.1 moved aside to ``tmp/`` before a commit."""


@dataclass(frozen=True)
class WeightFiles:
    """The ``weights/`` and ``tmp/`` directories of the registry at ``root``.

    Methods that take a connection run inside the caller's write transaction.
    """

    root: Path

    @property
    def directory(self) -> Path:
        return self.root / "weights"

    @property
    def temp_dir(self) -> Path:
        return self.root / "tmp"

    def path(self, sha256: str) -> Path:
        """The file of the weights with this digest (it need not exist)."""
        if not SHA256.match(sha256):  # it names a file: never a path of any other shape
            raise RegistryError(f"{sha256!r} is not a SHA-256 hex digest")
        return self.directory / f"{sha256}.safetensors"

    def write(self, model: nn.Module, what: str) -> WrittenFile:
        """Write ``model``'s weights to a fsynced temporary file in ``tmp/``.

        Stale temporaries of killed writers go first. ``what`` names the model in errors.
        """
        remove_stale_temps(self.temp_dir, min_age=STALE_TEMP_SECONDS, keep=(MOVED_ASIDE,))
        try:
            return write_temp(self.temp_dir, lambda p: _save_weights(model, p), label="weights")
        except OSError as err:
            raise RegistryError(
                f"cannot write the weights of {what} to {self.temp_dir}: {err.strerror or err}"
            ) from err

    def check(self, path: Path, ref: str, *, size: int, sha256: str) -> None:
        """Raise :class:`RegistryError` unless ``path`` has ``size`` bytes and ``sha256``."""
        if not path.is_file():
            raise RegistryError(
                f"the weight file of {ref} is missing: {path} (deleted outside the registry?)"
            )
        found = path.stat().st_size
        digest = sha256_file(path)
        if found != size or digest != sha256:
            raise RegistryError(
                f"the weight file of {ref} is corrupt: {path} has {found} bytes with "
                f"SHA-256 {digest}, expected {size} bytes with SHA-256 "
                f"{sha256} (truncated or modified)"
            )

    @staticmethod
    def load_into(model: nn.Module, path: Path, ref: str) -> None:
        """Load the weight file at ``path`` into ``model`` (every parameter must fit)."""
        from visionatlas.lifecycle.safetensors_load import load_safetensors

        try:
            load_safetensors(model, path, strict=True)
        except (RuntimeError, OSError) as err:
            raise RegistryError(f"cannot load the weights of {ref} from {path}: {err}") from err

    def place(self, written: WrittenFile, sha256: str) -> None:
        """Move a written file into ``weights/`` under its digest, durably."""
        target = self.path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(written.path, target)
        fsync_directory(target.parent)

    def release_unused(self, connection: sqlite3.Connection, digests: Iterable[str]) -> None:
        """Delete the weight files of ``digests`` that no committed row uses.

        Runs after the commit that dropped the last reference, under the write lock (so no
        writer can start using a file between the check and the deletion). A kill before
        it leaves an unused file in ``weights/``, which :meth:`collect_garbage` removes;
        a weight file never leaves ``weights/`` while a row names it.
        """
        for sha256 in digests:
            if not index.digest_in_use(connection, sha256):
                self.path(sha256).unlink(missing_ok=True)
        if self.directory.is_dir():
            fsync_directory(self.directory)

    def collect_garbage(self, connection: sqlite3.Connection, *, min_age: float) -> list[Path]:
        """Remove the weight files no row uses and the temporaries older than ``min_age``.

        A file that a row still needs and that visionatlas 0.1 moved aside is put back
        first. Returns the removed paths.
        """
        used = index.used_digests(connection)
        self.restore_moved_aside(used)
        removed: list[Path] = []
        for path in sorted(self.directory.glob("*.safetensors")):
            if path.stem not in used:
                path.unlink(missing_ok=True)
                removed.append(path)
        removed += remove_stale_temps(self.temp_dir, min_age=min_age)
        return removed

    def has_moved_aside(self, sha256: str) -> bool:
        """Whether ``tmp/`` holds a file of ``sha256`` that a killed 0.1 writer moved aside."""
        return any(self.temp_dir.glob(f"{MOVED_ASIDE}{sha256}.*"))

    def restore_moved_aside(self, used: Iterable[str]) -> list[Path]:
        """Put back weight files that a killed process moved to ``tmp/`` before committing.

        Registries written by visionatlas 0.1 moved a replaced file aside before the
        commit; a kill in between left the index naming a file in ``tmp/``. Only a file
        whose content still matches the digest is restored.
        """
        restored: list[Path] = []
        for sha256 in used:
            target = self.path(sha256) if SHA256.match(str(sha256)) else None
            if target is None or target.exists():
                continue
            for candidate in sorted(self.temp_dir.glob(f"{MOVED_ASIDE}{sha256}.*")):
                if sha256_file(candidate) == sha256:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(candidate, target)
                    fsync_directory(target.parent)
                    restored.append(target)
                    break
        return restored


def _save_weights(model: nn.Module, path: Path) -> None:
    import safetensors.torch

    safetensors.torch.save_model(model, str(path), metadata={"format": "pt"}, force_contiguous=True)
