"""The model registry: named, semantically versioned models with tags and metrics.

Layout of a registry directory::

    index.sqlite3              the index (SQLite, WAL journal)
    weights/<sha256>.safetensors
                               weight files, named by their SHA-256 (identical weights are
                               stored once)
    tmp/                       files being written

Every change runs in an ``IMMEDIATE`` transaction, so concurrent processes serialize on
SQLite's write lock (waiting up to ``timeout`` seconds) and none loses an entry. A weight
file is written and fsynced outside the lock, then moved into ``weights/`` inside the
transaction that inserts its row. A file leaves ``weights/`` only after the commit that
dropped its last row, under the write lock: a process killed at any step leaves every
entry loadable, at worst with an unused file that :meth:`ModelRegistry.collect_garbage`
removes. Readers see consistent snapshots (WAL), open the index read-only, validate every
value read back before it touches the file system, and verify the checksum of every
weight file they load. WAL needs a local filesystem (not NFS).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import fnmatch
import json
import os
import sqlite3
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionatlas.catalog import BuildInfo, Catalog, get_catalog
from visionatlas.errors import VisionAtlasError
from visionatlas.lifecycle.files import (
    STALE_TEMP_SECONDS,
    TEMP_PREFIX,
    WrittenFile,
    fsync_directory,
    remove_stale_temps,
    sha256_file,
    write_temp,
)
from visionatlas.lifecycle.rebuild import (
    Requirement,
    build_info_from_dict,
    build_info_of,
    rebuild_model,
    requirements,
)
from visionatlas.lifecycle.versioning.errors import (
    DamagedEntry,
    DamagedEntryError,
    InvalidVersionError,
    RegistryError,
    RegistryLockedError,
    RegistryWarning,
    UnknownModelError,
    UnknownVersionError,
    VersionExistsError,
)
from visionatlas.lifecycle.versioning.rows import (
    SHA256,
    check_name,
    check_tags,
    finite_json,
    parse_row,
)
from visionatlas.lifecycle.versioning.semver import (
    is_latest,
    latest,
    normalize_version,
    sort_versions,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

    from visionatlas.config import ModelConfig

__all__ = ["REGISTRY_ENV", "ModelEntry", "ModelRegistry", "default_registry_dir"]

REGISTRY_ENV = "VISIONATLAS_REGISTRY"
"""Environment variable naming the default registry directory."""

INDEX_NAME = "index.sqlite3"
SCHEMA_VERSION = 1
_GLOB_CHARS = frozenset("*?[")
_MOVED_ASIDE = f"{TEMP_PREFIX}trash."  # weight files moved aside by visionatlas 0.1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    task TEXT NOT NULL,
    architecture TEXT NOT NULL,
    build_info TEXT NOT NULL,
    requires TEXT NOT NULL,
    description TEXT NOT NULL,
    metrics TEXT NOT NULL,
    num_params INTEGER NOT NULL,
    weights_sha256 TEXT NOT NULL,
    weights_size INTEGER NOT NULL,
    versions TEXT NOT NULL,
    created_at TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE INDEX IF NOT EXISTS models_by_weights ON models (weights_sha256);
CREATE TABLE IF NOT EXISTS tags (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (name, version, tag),
    FOREIGN KEY (name, version) REFERENCES models (name, version) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS tags_by_tag ON tags (tag);
"""


_Entries = list["ModelEntry"]  # the method ModelRegistry.list shadows ``list`` in the class


def default_registry_dir() -> Path:
    """``$VISIONATLAS_REGISTRY``, else ``<user data dir>/visionatlas/registry``."""
    configured = os.environ.get(REGISTRY_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return platformdirs.user_data_path("visionatlas", appauthor=False) / "registry"


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One registered model version: how to rebuild it, its weights, tags and metrics."""

    name: str
    version: str
    build_info: BuildInfo
    tags: tuple[str, ...]
    metrics: dict[str, Any]
    description: str
    num_params: int
    weights_sha256: str
    weights_size: int
    weights_path: Path
    created_at: str
    versions: dict[str, str]
    requires: tuple[Requirement, ...] = ()

    @property
    def task(self) -> str:
        return self.build_info.task

    @property
    def architecture(self) -> str:
        return self.build_info.architecture

    @property
    def num_classes(self) -> int:
        return self.build_info.num_classes

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, as printed by ``visionatlas registry show --json``.

        Non-finite metric values become the strings ``"NaN"``, ``"Infinity"`` and
        ``"-Infinity"`` (standard JSON has no such numbers).
        """
        info = self.build_info
        return {
            "name": self.name,
            "version": self.version,
            "task": info.task,
            "architecture": info.architecture,
            "num_classes": info.num_classes,
            "config": info.config,
            "plugin": info.plugin,
            "distribution": info.distribution,
            "plugin_version": info.version,
            "tags": list(self.tags),
            "metrics": finite_json(self.metrics),
            "description": self.description,
            "num_params": self.num_params,
            "weights": {
                "path": str(self.weights_path),
                "sha256": self.weights_sha256,
                "size": self.weights_size,
            },
            "created_at": self.created_at,
            "versions": self.versions,
            "requires": [r.as_dict() for r in self.requires],
        }


def _is_version(text: str) -> bool:
    try:
        return normalize_version(text) == text
    except InvalidVersionError:
        return False


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


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
        return self.root / INDEX_NAME

    @property
    def weights_dir(self) -> Path:
        return self.root / "weights"

    @property
    def catalog(self) -> Catalog:
        return self._catalog or get_catalog()

    # -- connection ------------------------------------------------------------------------
    def _connect(self, *, write: bool) -> sqlite3.Connection:
        if not write:
            return self._connect_read_only()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RegistryError(
                f"cannot create the registry directory {self.root}: {err.strerror or err}"
            ) from err
        connection = sqlite3.connect(
            self.index_path, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            connection.execute("PRAGMA foreign_keys = ON")
            if not self._ready:
                self._initialize(connection)
        except BaseException:
            connection.close()
            raise
        return connection

    def _connect_read_only(self) -> sqlite3.Connection:
        """A connection that never writes: reads work on a read-only directory or medium.

        A WAL index needs its ``-shm`` file; where that cannot be created (read-only
        directory), the index is opened as immutable, which is right because nobody can
        write to it there either.
        """
        uri = self.index_path.absolute().as_uri()
        for options in ("mode=ro", "mode=ro&immutable=1"):
            try:
                connection = sqlite3.connect(
                    f"{uri}?{options}",
                    uri=True,
                    timeout=self.timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
                connection.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
                version = connection.execute("PRAGMA user_version").fetchone()[0]
            except sqlite3.OperationalError as err:
                if "unable to open" in str(err) and "immutable" not in options:
                    continue
                raise
            if version > SCHEMA_VERSION:
                connection.close()
                raise RegistryError(
                    f"the registry {self.index_path} has schema version {version}; this "
                    f"visionatlas reads up to {SCHEMA_VERSION}: upgrade visionatlas"
                )
            return connection
        raise AssertionError("unreachable")  # pragma: no cover

    def _initialize(self, connection: sqlite3.Connection) -> None:
        deadline = time.monotonic() + self.timeout
        while True:  # switching to WAL needs a moment alone with the file
            try:
                mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        if str(mode).lower() != "wal":
            raise RegistryError(
                f"cannot use the registry {self.index_path}: SQLite refused the WAL journal "
                f"(got {mode!r}); keep the registry on a local filesystem"
            )
        connection.execute("PRAGMA synchronous = FULL")
        with self._transaction(connection):
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RegistryError(
                    f"the registry {self.index_path} has schema version {version}; this "
                    f"visionatlas reads up to {SCHEMA_VERSION}: upgrade visionatlas"
                )
            for statement in _SCHEMA.split(";"):  # not executescript: it would COMMIT
                if statement.strip():
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._ready = True

    @contextlib.contextmanager
    def _transaction(self, connection: sqlite3.Connection) -> Iterator[None]:
        """``BEGIN IMMEDIATE``: take the write lock now, commit or roll back at the end."""
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if connection.in_transaction:  # SQLite may have rolled back already (disk full)
                connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    @contextlib.contextmanager
    def _session(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection for one operation; SQLite's errors become :class:`RegistryError`."""
        try:
            connection = self._connect(write=write)
            try:
                yield connection
            finally:
                connection.close()
        except sqlite3.Error as err:
            raise self._sqlite_error(err, write=write) from err

    def _sqlite_error(self, err: sqlite3.Error, *, write: bool) -> RegistryError:
        text = str(err)
        if "locked" in text or "busy" in text:
            return RegistryLockedError(
                f"the registry {self.root} is locked by another process (waited "
                f"{self.timeout:g} s for it); try again, or wait longer with "
                "ModelRegistry(timeout=...) or --timeout"
            )
        if "readonly" in text or "read-only" in text or (write and "unable to open" in text):
            return RegistryError(
                f"cannot write to the registry {self.root}: {text} (a read-only directory, "
                "medium or file); reading works there, writing needs write permission"
            )
        if isinstance(err, sqlite3.DatabaseError) and (
            "not a database" in text or "malformed" in text or "no such" in text
        ):
            return RegistryError(
                f"{self.index_path} is not a visionatlas registry index or is damaged "
                f"(SQLite: {text}); restore it from a backup, or move it away to start an "
                "empty registry"
            )
        return RegistryError(f"the registry index {self.index_path} failed: {text}")

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
        info = self._build_info(model, config)
        needs = requirements(info, self.catalog)
        self._check_rebuildable(info, needs, model, f"model {name!r} {version}")
        from visionatlas.lifecycle._statecodec import json_values
        from visionatlas.models.inspection import count_parameters

        metrics_json = json_values(metrics or {}, "metrics")  # a StateCodecError is a ValueError
        with self._session(write=True) as connection:  # fail fast, before writing weights
            if not overwrite and self._row(connection, name, version) is not None:
                raise VersionExistsError(name, version)
        temp_dir = self.root / "tmp"
        remove_stale_temps(temp_dir, min_age=STALE_TEMP_SECONDS, keep=(_MOVED_ASIDE,))
        try:
            written = write_temp(temp_dir, lambda p: _save_weights(model, p), label="weights")
        except OSError as err:
            raise RegistryError(
                f"cannot write the weights of {name!r} {version} to {temp_dir}: "
                f"{err.strerror or err}"
            ) from err
        try:
            row = {
                "name": name,
                "version": version,
                "task": info.task,
                "architecture": info.architecture,
                "build_info": json.dumps(dataclasses.asdict(info), sort_keys=True),
                "requires": json.dumps([r.as_dict() for r in needs]),
                "description": description,
                "metrics": json.dumps(metrics_json, sort_keys=True, allow_nan=False),
                "num_params": count_parameters(model, trainable_only=False),
                "weights_sha256": written.sha256,
                "weights_size": written.size,
                "versions": json.dumps(_library_versions(info), sort_keys=True),
                "created_at": _now(),
            }
            self._insert(row, tag_list, written, overwrite=overwrite)
        finally:
            written.discard()
        return self.get(name, version)

    def _insert(
        self, row: dict[str, Any], tags: tuple[str, ...], written: WrittenFile, *, overwrite: bool
    ) -> None:
        name, version, sha256 = row["name"], row["version"], row["weights_sha256"]
        target = self._weights_file(sha256)
        replaced: str | None = None
        with self._session(write=True) as connection:
            try:
                with self._transaction(connection):
                    old = self._row(connection, name, version)
                    if old is not None and not overwrite:
                        raise VersionExistsError(name, version)
                    if old is not None:
                        replaced = old["weights_sha256"]
                        connection.execute(
                            "DELETE FROM models WHERE name = ? AND version = ?", (name, version)
                        )
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(written.path, target)
                    fsync_directory(target.parent)
                    seq = connection.execute(
                        "SELECT COALESCE(MAX(seq), 0) + 1 FROM models"
                    ).fetchone()[0]
                    columns = [*row, "seq"]
                    connection.execute(
                        f"INSERT INTO models ({', '.join(columns)}) "
                        f"VALUES ({', '.join('?' for _ in columns)})",
                        [*row.values(), seq],
                    )
                    connection.executemany(
                        "INSERT INTO tags (name, version, tag) VALUES (?, ?, ?)",
                        [(name, version, tag) for tag in tags],
                    )
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
        with self._session(write=True) as connection, self._transaction(connection):
            found = self._resolve(connection, name, version)
            sha256 = found["weights_sha256"]
            connection.execute(
                "DELETE FROM models WHERE name = ? AND version = ?", (name, found["version"])
            )
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
        sql = (
            "INSERT OR IGNORE INTO tags (name, version, tag) VALUES (?, ?, ?)"
            if add
            else "DELETE FROM tags WHERE name = ? AND version = ? AND tag = ?"
        )
        with self._session(write=True) as connection, self._transaction(connection):
            if self._row(connection, entry.name, entry.version) is None:
                raise UnknownVersionError(entry.name, entry.version, self.versions(name))
            connection.executemany(sql, [(entry.name, entry.version, t) for t in tags])
        return self.get(entry.name, entry.version)

    def _release_unused(self, digests: Iterable[str]) -> None:
        """Delete the weight files of ``digests`` that no committed row uses.

        Runs after the commit that dropped the last reference, under the write lock (so no
        writer can start using a file between the check and the deletion). A kill before
        it leaves an unused file in ``weights/``, which :meth:`collect_garbage` removes;
        a weight file never leaves ``weights/`` while a row names it.
        """
        with self._session(write=True) as connection, self._transaction(connection):
            for sha256 in digests:
                used = connection.execute(
                    "SELECT 1 FROM models WHERE weights_sha256 = ? LIMIT 1", (sha256,)
                ).fetchone()
                if used is None:
                    self._weights_file(sha256).unlink(missing_ok=True)
            if self.weights_dir.is_dir():
                fsync_directory(self.weights_dir)

    def collect_garbage(self, *, min_age: float = STALE_TEMP_SECONDS) -> list[Path]:
        """Remove files no entry uses: orphaned weights and stale temporary files.

        Orphans are left by a process killed between moving its weights into place and
        committing, or between a commit that dropped an entry and the deletion of its
        file. Files in ``tmp/`` (ours and safetensors' own) younger than ``min_age``
        seconds may belong to a registration in progress and are kept. A weight file that
        an entry still needs and that an older visionatlas moved aside to ``tmp/`` is put
        back instead. Returns the removed paths.
        """
        removed: list[Path] = []
        if not self.index_path.exists():
            return removed
        with self._session(write=True) as connection, self._transaction(connection):
            used = {row[0] for row in connection.execute("SELECT weights_sha256 FROM models")}
            self._restore_moved_aside(used)
            for path in sorted(self.weights_dir.glob("*.safetensors")):
                if path.stem not in used:
                    path.unlink(missing_ok=True)
                    removed.append(path)
            removed += remove_stale_temps(self.root / "tmp", min_age=min_age)
        return removed

    def _restore_moved_aside(self, used: Iterable[str]) -> list[Path]:
        """Put back weight files that a killed process moved to ``tmp/`` before committing.

        Registries written by visionatlas 0.1 moved a replaced file aside before the
        commit; a kill in between left the index naming a file in ``tmp/``. Only a file
        whose content still matches the digest is restored.
        """
        restored: list[Path] = []
        for sha256 in used:
            target = self._weights_file(sha256) if SHA256.match(str(sha256)) else None
            if target is None or target.exists():
                continue
            for candidate in sorted((self.root / "tmp").glob(f"{_MOVED_ASIDE}{sha256}.*")):
                if sha256_file(candidate) == sha256:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(candidate, target)
                    fsync_directory(target.parent)
                    restored.append(target)
                    break
        return restored

    def _try_restore(self, sha256: str) -> None:
        """Put back a weight file moved aside by a killed 0.1 writer, if there is one."""
        if not any((self.root / "tmp").glob(f"{_MOVED_ASIDE}{sha256}.*")):
            return
        try:
            with self._session(write=True) as connection, self._transaction(connection):
                self._restore_moved_aside([sha256])
        except RegistryError:  # a read-only registry cannot be repaired
            return

    # -- reading ---------------------------------------------------------------------------
    def _weights_file(self, sha256: str) -> Path:
        if not SHA256.match(sha256):  # it names a file: never a path of any other shape
            raise RegistryError(f"{sha256!r} is not a SHA-256 hex digest")
        return self.weights_dir / f"{sha256}.safetensors"

    @staticmethod
    def _row(connection: sqlite3.Connection, name: str, version: str) -> sqlite3.Row | None:
        connection.row_factory = sqlite3.Row
        row: sqlite3.Row | None = connection.execute(
            "SELECT * FROM models WHERE name = ? AND version = ?", (name, version)
        ).fetchone()
        return row

    def _resolve(self, connection: sqlite3.Connection, name: str, version: str) -> sqlite3.Row:
        """The row of ``name`` at ``version`` (or ``"latest"``), read without parsing it."""
        connection.row_factory = sqlite3.Row
        rows = connection.execute(
            "SELECT version, weights_sha256 FROM models WHERE name = ?", (name,)
        ).fetchall()
        if not rows:
            names = [r[0] for r in connection.execute("SELECT DISTINCT name FROM models")]
            raise UnknownModelError(name, [str(n) for n in names])
        by_version = {str(r["version"]): r for r in rows}
        valid = [v for v in by_version if _is_version(v)]
        wanted = latest(valid) if is_latest(version) else version
        if wanted not in by_version:
            raise UnknownVersionError(name, str(wanted), sort_versions(valid))
        return by_version[wanted]

    def _read(
        self, where: str = "", params: Iterable[Any] = ()
    ) -> tuple[list[ModelEntry], list[DamagedEntry]]:
        """The entries of the rows selected by ``where``, and the rows that are damaged."""
        if not self.index_path.exists():
            return [], []
        with self._session() as connection:
            connection.row_factory = sqlite3.Row
            connection.execute("BEGIN")  # one snapshot for models and tags
            try:
                rows = connection.execute(
                    f"SELECT * FROM models {where} ORDER BY seq", list(params)
                ).fetchall()
                tags: dict[tuple[object, object], list[object]] = {}
                for name, version, tag in connection.execute(
                    "SELECT name, version, tag FROM tags ORDER BY tag"
                ):
                    tags.setdefault((name, version), []).append(tag)
            finally:
                connection.execute("COMMIT")
        entries: list[ModelEntry] = []
        damaged: list[DamagedEntry] = []
        for row in rows:
            try:
                fields = parse_row(row, tags.get((row["name"], row["version"]), ()))
            except DamagedEntryError as err:
                damaged.append(err.damage)
                continue
            weights = self._weights_file(fields["weights_sha256"])
            entries.append(ModelEntry(**fields, weights_path=weights))
        return entries, damaged

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
        wanted = set(check_tags(tags))
        glob = None
        if pattern is not None:
            glob = pattern if _GLOB_CHARS & set(pattern) else f"*{pattern}*"
        entries = self._entries("WHERE name = ?", (name,)) if name is not None else self._entries()
        found = [
            e
            for e in entries
            if wanted <= set(e.tags)
            and (glob is None or fnmatch.fnmatchcase(e.name.lower(), glob.lower()))
        ]
        by_name: dict[str, _Entries] = {}
        for entry in found:
            by_name.setdefault(entry.name, []).append(entry)
        ordered: _Entries = []
        for key in sorted(by_name):
            positions = {e.version: e for e in by_name[key]}
            ordered += [positions[v] for v in sort_versions(positions)]
        return ordered

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
            best = latest(v for v in [*by_version, *broken] if _is_version(v))
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
        if not path.is_file():
            raise RegistryError(
                f"the weight file of {entry.ref} is missing: {path} (deleted outside the registry?)"
            )
        size = path.stat().st_size
        digest = sha256_file(path)
        if size != entry.weights_size or digest != entry.weights_sha256:
            raise RegistryError(
                f"the weight file of {entry.ref} is corrupt: {path} has {size} bytes with "
                f"SHA-256 {digest}, expected {entry.weights_size} bytes with SHA-256 "
                f"{entry.weights_sha256} (truncated or modified)"
            )
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
        import safetensors.torch

        entry = self.verify(name, version) if verify else self.get(name, version)
        try:
            model = rebuild_model(
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
        try:
            safetensors.torch.load_model(model, str(entry.weights_path), strict=True)
        except (RuntimeError, OSError) as err:
            raise RegistryError(
                f"cannot load the weights of {entry.ref} from {entry.weights_path}: {err}"
            ) from err
        model.to(device)
        return model.eval()

    # -- helpers ---------------------------------------------------------------------------
    def _build_info(self, model: nn.Module, config: Any) -> BuildInfo:
        info = build_info_of(model)
        if isinstance(config, BuildInfo):
            return config
        if isinstance(config, Mapping) and "architecture" in config and "task" in config:
            return build_info_from_dict(config)
        if info is None:
            raise RegistryError(
                f"the {type(model).__name__} does not say how it was built (no "
                "visionatlas_info): build it with visionatlas.create_model or "
                "visionatlas.compose_model, or pass config={'task': ..., 'architecture': ..., "
                "'num_classes': ..., 'config': {...}}"
            )
        if config is not None:
            from visionatlas.models.composition import is_composed

            if is_composed(info):
                raise RegistryError(
                    "a composed model records its own composition; leave config unset"
                )
            given = self.catalog.make_config(info.task, info.architecture, config)
            built = self.catalog.make_config(info.task, info.architecture, info.config)
            if given != built:
                raise RegistryError(
                    f"config= differs from the config {info.task}/{info.architecture} was "
                    f"built with ({built.model_dump(mode='json')}); the registry rebuilds "
                    "from the model's own build info, so leave config unset"
                )
        return info

    def _check_rebuildable(
        self, info: BuildInfo, needs: Iterable[Requirement], model: nn.Module, what: str
    ) -> None:
        """Build the recorded architecture on the meta device; compare names and shapes."""
        import torch

        def rebuild() -> nn.Module:
            return rebuild_model(info, needs=list(needs), catalog=self.catalog, what=what)

        try:
            with torch.device("meta"):  # no memory, no initialization cost
                rebuilt = rebuild()
        except (NotImplementedError, RuntimeError, ValueError) as err:
            if isinstance(err, VisionAtlasError):
                raise
            rebuilt = rebuild()  # a builder that needs real tensors
        expected = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
        actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        if expected == actual:
            return
        missing = sorted(set(expected) - set(actual))[:5]
        unexpected = sorted(set(actual) - set(expected))[:5]
        shapes = [
            f"{k}: {actual[k]} vs {expected[k]}"
            for k in sorted(set(actual) & set(expected))
            if actual[k] != expected[k]
        ][:5]
        raise RegistryError(
            f"{what} would not load back: rebuilding {info.task}/{info.architecture} with "
            f"num_classes={info.num_classes} gives other parameters (missing: {missing}, "
            f"unexpected: {unexpected}, shapes model vs rebuilt: {shapes}). Was the model "
            "changed after it was built? reset_head() keeps the build info up to date."
        )


def _save_weights(model: nn.Module, path: Path) -> None:
    import safetensors.torch

    safetensors.torch.save_model(model, str(path), metadata={"format": "pt"}, force_contiguous=True)


def _library_versions(info: BuildInfo) -> dict[str, str]:
    import torch

    from visionatlas import __version__

    versions = {"visionatlas": __version__, "torch": str(torch.__version__)}
    if info.distribution and info.version:
        versions[info.distribution] = info.version
    return versions
