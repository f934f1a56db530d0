"""The model registry: named, semantically versioned models with tags and metrics.

Layout of a registry directory::

    index.sqlite3              the index (SQLite, WAL journal)
    weights/<sha256>.safetensors
                               weight files, named by their SHA-256 (identical weights are
                               stored once)
    tmp/                       files being written

Every change runs in an ``IMMEDIATE`` transaction, so concurrent processes serialize on
SQLite's write lock (waiting up to ``timeout`` seconds) and none loses an entry; a process
killed at any step leaves every entry loadable (see
:mod:`~visionatlas.lifecycle.versioning.weightfiles`). Readers see consistent snapshots
(WAL), open the index read-only, validate every value read back before it touches the file
system, and verify the checksum of every weight file they load. WAL needs a local
filesystem (not NFS).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionatlas.catalog import BuildInfo, Catalog, get_catalog
from visionatlas.errors import VisionAtlasError
from visionatlas.lifecycle.files import STALE_TEMP_SECONDS, WrittenFile
from visionatlas.lifecycle.rebuild import rebuild_model, requirements
from visionatlas.lifecycle.versioning import index
from visionatlas.lifecycle.versioning.errors import (
    DamagedEntry,
    DamagedEntryError,
    RegistryError,
    RegistryWarning,
    UnknownModelError,
    UnknownVersionError,
    VersionExistsError,
)
from visionatlas.lifecycle.versioning.provenance import (
    check_rebuildable,
    library_versions,
    recorded_build_info,
)
from visionatlas.lifecycle.versioning.rows import (
    SHA256,
    ModelEntry,
    check_name,
    check_tags,
    new_row,
    parse_entries,
    select_entries,
)
from visionatlas.lifecycle.versioning.semver import (
    is_latest,
    is_version,
    latest,
    normalize_version,
    sort_versions,
)
from visionatlas.lifecycle.versioning.weightfiles import WeightFiles

if TYPE_CHECKING:
    import torch
    from torch import nn

    from visionatlas.config import ModelConfig

__all__ = ["REGISTRY_ENV", "ModelEntry", "ModelRegistry", "default_registry_dir"]

REGISTRY_ENV = "VISIONATLAS_REGISTRY"
"""Environment variable naming the default registry directory."""

_Entries = list["ModelEntry"]  # the method ModelRegistry.list shadows ``list`` in the class


def default_registry_dir() -> Path:
    """``$VISIONATLAS_REGISTRY``, else ``<user data dir>/visionatlas/registry``."""
    configured = os.environ.get(REGISTRY_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return platformdirs.user_data_path("visionatlas", appauthor=False) / "registry"


class ModelRegistry:
    """Named, versioned models stored in a directory (embedded SQLite index + safetensors).

    ``root`` defaults to :func:`default_registry_dir`. ``timeout`` is how long a write
    waits for another process's write to finish. ``catalog`` builds models on
    :meth:`load` (default: the process-wide catalog).
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        timeout: float = 60.0,
        catalog: Catalog | None = None,
    ) -> None:
        self.root = Path(root).expanduser() if root is not None else default_registry_dir()
        self.timeout = timeout
        self._catalog = catalog
        self._ready = False

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r})"

    @property
    def index_path(self) -> Path:
        return self.root / index.INDEX_NAME

    @property
    def weights_dir(self) -> Path:
        return self._files.directory

    @property
    def catalog(self) -> Catalog:
        return self._catalog or get_catalog()

    @property
    def _files(self) -> WeightFiles:
        return WeightFiles(self.root)

    @contextlib.contextmanager
    def _session(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection for one operation; SQLite's errors become :class:`RegistryError`.

        The first writing session of this object creates the index's schema.
        """
        try:
            connection = index.connect(
                self.index_path, timeout=self.timeout, write=write, initialize=not self._ready
            )
            self._ready = self._ready or write
            try:
                yield connection
            finally:
                connection.close()
        except sqlite3.Error as err:
            raise index.describe_error(
                err, self.index_path, timeout=self.timeout, write=write
            ) from err

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """A writing session inside one ``IMMEDIATE`` transaction."""
        with self._session(write=True) as connection, index.transaction(connection):
            yield connection

    # -- writing ---------------------------------------------------------------------------
    def register(
        self,
        name: str,
        version: str,
        model: nn.Module,
        *,
        tags: str | Iterable[str] = (),
        metrics: Mapping[str, Any] | None = None,
        description: str = "",
        config: ModelConfig | Mapping[str, Any] | BuildInfo | None = None,
        overwrite: bool = False,
    ) -> ModelEntry:
        """Store ``model``'s weights as ``name`` ``version`` and return the entry.

        A model built by :func:`~visionatlas.create_model` or
        :func:`~visionatlas.compose_model` knows how it was built, so nothing else is
        needed. For another module, ``config`` says how to rebuild it: a
        :class:`~visionatlas.BuildInfo` or a mapping with ``task``, ``architecture``,
        ``num_classes`` and optionally ``config``; for a catalog model it may instead be
        the model's config, which must then match the one it was built with. The
        registry checks that the rebuilt architecture has the model's parameter names and
        shapes. An existing version is refused unless ``overwrite=True``.
        """
        name = check_name(name)
        version = normalize_version(version)
        tag_list = check_tags(tags)
        if not isinstance(description, str):
            raise TypeError(f"description must be a str, got {type(description).__name__}")
        info = recorded_build_info(model, config, self.catalog)
        needs = requirements(info, self.catalog)
        check_rebuildable(info, needs, model, f"model {name!r} {version}", self.catalog)
        from visionatlas.lifecycle._statecodec import json_values
        from visionatlas.models.inspection import count_parameters

        metrics_json = json_values(metrics or {}, "metrics")  # a StateCodecError is a ValueError
        with self._session(write=True) as connection:  # fail fast, before writing weights
            if not overwrite and index.fetch_row(connection, name, version) is not None:
                raise VersionExistsError(name, version)
        written = self._files.write(model, f"{name!r} {version}")
        try:
            row = new_row(
                name,
                version,
                info,
                needs,
                description=description,
                metrics=metrics_json,
                num_params=count_parameters(model, trainable_only=False),
                weights=written,
                versions=library_versions(info),
            )
            self._insert(row, tag_list, written, overwrite=overwrite)
        finally:
            written.discard()
        return self.get(name, version)

    def _insert(
        self, row: dict[str, Any], tags: tuple[str, ...], written: WrittenFile, *, overwrite: bool
    ) -> None:
        name, version, sha256 = row["name"], row["version"], row["weights_sha256"]
        replaced: str | None = None
        with self._session(write=True) as connection:
            try:
                with index.transaction(connection):
                    old = index.fetch_row(connection, name, version)
                    if old is not None and not overwrite:
                        raise VersionExistsError(name, version)
                    if old is not None:
                        replaced = old["weights_sha256"]
                        index.delete_row(connection, name, version)
                    self._files.place(written, sha256)
                    index.insert_row(connection, row, tags)
            except BaseException as err:
                self._release_unused([sha256])  # the file placed for a row never committed
                if isinstance(err, sqlite3.IntegrityError):
                    raise VersionExistsError(name, version) from err
                raise
        if replaced is not None and replaced != sha256:
            self._release_unused([replaced])

    def delete(self, name: str, version: str) -> None:
        """Remove one version (its weight file too, unless another entry shares it).

        A damaged entry (see :meth:`problems`) can be deleted too.
        """
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        version = version if is_latest(version) else normalize_version(version)
        with self._writing() as connection:
            found = index.resolve_row(connection, name, version)
            sha256 = found["weights_sha256"]
            index.delete_row(connection, name, found["version"])
        if isinstance(sha256, str) and SHA256.match(sha256):
            self._release_unused([sha256])

    def tag(self, name: str, version: str, *tags: str) -> ModelEntry:
        """Add tags to a version."""
        return self._edit_tags(name, version, check_tags(tags), add=True)

    def untag(self, name: str, version: str, *tags: str) -> ModelEntry:
        """Remove tags from a version."""
        return self._edit_tags(name, version, check_tags(tags), add=False)

    def _edit_tags(
        self, name: str, version: str, tags: tuple[str, ...], *, add: bool
    ) -> ModelEntry:
        entry = self.get(name, version)
        with self._writing() as connection:
            if index.fetch_row(connection, entry.name, entry.version) is None:
                raise UnknownVersionError(entry.name, entry.version, self.versions(name))
            index.edit_tags(connection, entry.name, entry.version, tags, add=add)
        return self.get(entry.name, entry.version)

    def _release_unused(self, digests: Iterable[str]) -> None:
        """Delete the weight files of ``digests`` that no committed row uses (see
        :meth:`WeightFiles.release_unused`), under the write lock."""
        with self._writing() as connection:
            self._files.release_unused(connection, digests)

    def collect_garbage(self, *, min_age: float = STALE_TEMP_SECONDS) -> list[Path]:
        """Remove files no entry uses: orphaned weights and stale temporary files.

        Orphans are left by a process killed between moving its weights into place and
        committing, or between a commit that dropped an entry and the deletion of its
        file. Files in ``tmp/`` (ours and safetensors' own) younger than ``min_age``
        seconds may belong to a registration in progress and are kept. A weight file that
        an entry still needs and that an older visionatlas moved aside to ``tmp/`` is put
        back instead. Returns the removed paths.
        """
        if not self.index_path.exists():
            return []
        with self._writing() as connection:
            return self._files.collect_garbage(connection, min_age=min_age)

    def _try_restore(self, sha256: str) -> None:
        """Put back a weight file moved aside by a killed 0.1 writer, if there is one."""
        if not self._files.has_moved_aside(sha256):
            return
        try:
            with self._writing():
                self._files.restore_moved_aside([sha256])
        except RegistryError:  # a read-only registry cannot be repaired
            return

    # -- reading ---------------------------------------------------------------------------
    def _read(
        self, where: str = "", params: Iterable[Any] = ()
    ) -> tuple[list[ModelEntry], list[DamagedEntry]]:
        """The entries of the rows selected by ``where``, and the rows that are damaged."""
        if not self.index_path.exists():
            return [], []
        with self._session() as connection:
            rows, tags = index.read_rows(connection, where, params)
        return parse_entries(rows, tags, self._files.path)

    def _entries(self, where: str = "", params: Iterable[Any] = ()) -> list[ModelEntry]:
        """The sound entries; a damaged row is skipped with a :class:`RegistryWarning`."""
        entries, damaged = self._read(where, params)
        for damage in damaged:
            warnings.warn(f"skipped {damage}", RegistryWarning, stacklevel=3)
        return entries

    def problems(self) -> list[DamagedEntry]:
        """The entries whose index row is damaged (edited or corrupted), with the reason.

        :meth:`list` and :meth:`search` skip them (with a :class:`RegistryWarning`),
        :meth:`get` and :meth:`load` refuse them, :meth:`delete` removes them.
        """
        return self._read()[1]

    def names(self) -> list[str]:
        """Registered model names, sorted."""
        return sorted({entry.name for entry in self._entries()})

    def versions(self, name: str) -> list[str]:
        """Versions of ``name`` in ascending semantic-version order (empty if unknown)."""
        return sort_versions(e.version for e in self._entries("WHERE name = ?", (name,)))

    def list(self, name: str | None = None, *, tags: str | Iterable[str] = ()) -> _Entries:
        """Entries, optionally of one model name and having all of ``tags``.

        Sorted by name, then by ascending version.
        """
        return self.search(None, tags=tags, name=name)

    def search(
        self,
        pattern: str | None = None,
        *,
        tags: str | Iterable[str] = (),
        name: str | None = None,
    ) -> _Entries:
        """Entries whose name matches ``pattern`` and that carry every tag in ``tags``.

        ``pattern`` is a case-insensitive glob; without wildcards it matches as a substring
        (``resnet`` means ``*resnet*``). ``name`` selects one exact name.
        """
        entries = self._entries("WHERE name = ?", (name,)) if name is not None else self._entries()
        return select_entries(entries, pattern, check_tags(tags))

    def get(self, name: str, version: str = "latest") -> ModelEntry:
        """The entry of ``name`` at ``version`` (``"latest"``: the highest version).

        A damaged entry raises :class:`DamagedEntryError`; ``"latest"`` never falls back
        to a lower version because the highest one is damaged.
        """
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        entries, damaged = self._read("WHERE name = ?", (name,))
        if not entries and not damaged:
            raise UnknownModelError(name, self.names())
        by_version = {e.version: e for e in entries}  # registration order: ties go to the last
        broken = {d.version: d for d in damaged}
        if is_latest(version):
            best = latest(v for v in [*by_version, *broken] if is_version(v))
            if best is None or best in broken:
                raise DamagedEntryError(broken[best] if best is not None else damaged[0])
            return by_version[best]
        wanted = normalize_version(version)
        if wanted in broken and wanted not in by_version:
            raise DamagedEntryError(broken[wanted])
        if wanted not in by_version:
            raise UnknownVersionError(name, wanted, sort_versions(by_version))
        return by_version[wanted]

    def verify(self, name: str, version: str = "latest") -> ModelEntry:
        """Check that the weight file exists and matches its size and SHA-256."""
        entry = self.get(name, version)
        path = entry.weights_path
        if not path.is_file():
            self._try_restore(entry.weights_sha256)
        self._files.check(path, entry.ref, size=entry.weights_size, sha256=entry.weights_sha256)
        return entry

    def load(
        self,
        name: str,
        version: str = "latest",
        *,
        device: str | torch.device = "cpu",
        verify: bool = True,
    ) -> nn.Module:
        """Rebuild ``name`` at ``version`` through the catalog and load its weights.

        The model comes back in eval mode on ``device``; ``model.visionatlas_info`` says
        how it was built. ``verify`` checks the weight file's SHA-256 first.
        """
        entry = self.verify(name, version) if verify else self.get(name, version)
        from visionatlas.models.deferred_init import construct_and_load

        def construct() -> nn.Module:
            try:
                return rebuild_model(
                    entry.build_info,
                    needs=entry.requires,
                    catalog=self.catalog,
                    what=f"registered model {entry.ref}",
                )
            except ValueError as err:
                if isinstance(err, VisionAtlasError):
                    raise
                raise DamagedEntryError(
                    DamagedEntry(entry.name, entry.version, "build_info", f"is invalid: {err}")
                ) from err

        model = construct_and_load(
            construct, lambda built: self._files.load_into(built, entry.weights_path, entry.ref)
        )
        model.to(device)
        return model.eval()
