"""The SQLite index of a registry directory: schema, connections, transactions and queries.

Every statement the registry runs is here. Writers open the index read-write (creating the
schema on first use, in WAL mode) and change it in ``IMMEDIATE`` transactions, so
concurrent processes serialize on SQLite's write lock. Readers open it read-only, so reads
work on a read-only directory or medium. Values are returned as stored: checking them is
:mod:`visionatlas.lifecycle.versioning.rows`' job.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from visionatlas.lifecycle.versioning.errors import (
    RegistryError,
    RegistryLockedError,
    UnknownModelError,
    UnknownVersionError,
)
from visionatlas.lifecycle.versioning.semver import is_latest, is_version, latest, sort_versions

__all__ = [
    "INDEX_NAME",
    "SCHEMA_VERSION",
    "connect",
    "delete_row",
    "describe_error",
    "digest_in_use",
    "edit_tags",
    "fetch_row",
    "insert_row",
    "read_rows",
    "resolve_row",
    "transaction",
    "used_digests",
]

INDEX_NAME = "index.sqlite3"
SCHEMA_VERSION = 1

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


# -- connections -------------------------------------------------------------------------------
def connect(path: Path, *, timeout: float, write: bool, initialize: bool) -> sqlite3.Connection:
    """A connection to the index at ``path``.

    ``write`` opens it read-write, creating the directory, and with ``initialize`` also
    switches it to WAL and creates the schema (once per registry object is enough).
    Otherwise the connection never writes. ``timeout`` is how long to wait for a lock.
    """
    if not write:
        return _connect_read_only(path, timeout)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RegistryError(
            f"cannot create the registry directory {path.parent}: {err.strerror or err}"
        ) from err
    connection = sqlite3.connect(
        path, timeout=timeout, isolation_level=None, check_same_thread=False
    )
    try:
        connection.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        connection.execute("PRAGMA foreign_keys = ON")
        if initialize:
            _initialize(connection, path, timeout)
    except BaseException:
        connection.close()
        raise
    return connection


def _connect_read_only(path: Path, timeout: float) -> sqlite3.Connection:
    """A connection that never writes: reads work on a read-only directory or medium.

    A WAL index needs its ``-shm`` file; where that cannot be created (read-only
    directory), the index is opened as immutable, which is right because nobody can
    write to it there either.
    """
    uri = path.absolute().as_uri()
    for options in ("mode=ro", "mode=ro&immutable=1"):
        try:
            connection = sqlite3.connect(
                f"{uri}?{options}",
                uri=True,
                timeout=timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            connection.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            version = connection.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.OperationalError as err:
            if "unable to open" in str(err) and "immutable" not in options:
                continue
            raise
        if version > SCHEMA_VERSION:
            connection.close()
            raise _too_new(path, version)
        return connection
    raise AssertionError("unreachable")  # pragma: no cover


def _initialize(connection: sqlite3.Connection, path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
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
            f"cannot use the registry {path}: SQLite refused the WAL journal "
            f"(got {mode!r}); keep the registry on a local filesystem"
        )
    connection.execute("PRAGMA synchronous = FULL")
    with transaction(connection):
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise _too_new(path, version)
        for statement in _SCHEMA.split(";"):  # not executescript: it would COMMIT
            if statement.strip():
                connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _too_new(path: Path, version: int) -> RegistryError:
    return RegistryError(
        f"the registry {path} has schema version {version}; this "
        f"visionatlas reads up to {SCHEMA_VERSION}: upgrade visionatlas"
    )


@contextlib.contextmanager
def transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE``: take the write lock now, commit or roll back at the end."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if connection.in_transaction:  # SQLite may have rolled back already (disk full)
            connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def describe_error(err: sqlite3.Error, path: Path, *, timeout: float, write: bool) -> RegistryError:
    """SQLite's ``err`` on the index at ``path`` as a :class:`RegistryError` saying what to do."""
    root = path.parent
    text = str(err)
    if "locked" in text or "busy" in text:
        return RegistryLockedError(
            f"the registry {root} is locked by another process (waited "
            f"{timeout:g} s for it); try again, or wait longer with "
            "ModelRegistry(timeout=...) or --timeout"
        )
    if "readonly" in text or "read-only" in text or (write and "unable to open" in text):
        return RegistryError(
            f"cannot write to the registry {root}: {text} (a read-only directory, "
            "medium or file); reading works there, writing needs write permission"
        )
    if isinstance(err, sqlite3.DatabaseError) and (
        "not a database" in text or "malformed" in text or "no such" in text
    ):
        return RegistryError(
            f"{path} is not a visionatlas registry index or is damaged "
            f"(SQLite: {text}); restore it from a backup, or move it away to start an "
            "empty registry"
        )
    return RegistryError(f"the registry index {path} failed: {text}")


# -- queries -----------------------------------------------------------------------------------
def fetch_row(connection: sqlite3.Connection, name: str, version: str) -> sqlite3.Row | None:
    """The ``models`` row of ``name`` at exactly ``version``, if there is one."""
    connection.row_factory = sqlite3.Row
    row: sqlite3.Row | None = connection.execute(
        "SELECT * FROM models WHERE name = ? AND version = ?", (name, version)
    ).fetchone()
    return row


def resolve_row(connection: sqlite3.Connection, name: str, version: str) -> sqlite3.Row:
    """The row of ``name`` at ``version`` (or ``"latest"``), read without parsing it.

    Only its ``version`` and ``weights_sha256`` are selected.
    """
    connection.row_factory = sqlite3.Row
    rows = connection.execute(
        "SELECT version, weights_sha256 FROM models WHERE name = ?", (name,)
    ).fetchall()
    if not rows:
        names = [r[0] for r in connection.execute("SELECT DISTINCT name FROM models")]
        raise UnknownModelError(name, [str(n) for n in names])
    by_version = {str(r["version"]): r for r in rows}
    valid = [v for v in by_version if is_version(v)]
    wanted = latest(valid) if is_latest(version) else version
    if wanted not in by_version:
        raise UnknownVersionError(name, str(wanted), sort_versions(valid))
    return by_version[wanted]


def read_rows(
    connection: sqlite3.Connection, where: str = "", params: Iterable[Any] = ()
) -> tuple[list[Any], dict[tuple[object, object], list[object]]]:
    """The ``models`` rows selected by ``where`` in registration order, and every entry's
    tags by ``(name, version)``, from one snapshot."""
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
    return rows, tags


def insert_row(connection: sqlite3.Connection, row: Mapping[str, Any], tags: Iterable[str]) -> None:
    """Insert one ``models`` row (numbered after every other) and its tags."""
    seq = connection.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM models").fetchone()[0]
    columns = [*row, "seq"]
    connection.execute(
        f"INSERT INTO models ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
        [*row.values(), seq],
    )
    connection.executemany(
        "INSERT INTO tags (name, version, tag) VALUES (?, ?, ?)",
        [(row["name"], row["version"], tag) for tag in tags],
    )


def delete_row(connection: sqlite3.Connection, name: str, version: str) -> None:
    """Delete one ``models`` row (its tags go with it)."""
    connection.execute("DELETE FROM models WHERE name = ? AND version = ?", (name, version))


def edit_tags(
    connection: sqlite3.Connection, name: str, version: str, tags: Iterable[str], *, add: bool
) -> None:
    """Add ``tags`` to an entry (those it has are kept), or remove them."""
    sql = (
        "INSERT OR IGNORE INTO tags (name, version, tag) VALUES (?, ?, ?)"
        if add
        else "DELETE FROM tags WHERE name = ? AND version = ? AND tag = ?"
    )
    connection.executemany(sql, [(name, version, t) for t in tags])


def digest_in_use(connection: sqlite3.Connection, sha256: str) -> bool:
    """Whether any row names the weight file ``sha256``."""
    used = connection.execute(
        "SELECT 1 FROM models WHERE weights_sha256 = ? LIMIT 1", (sha256,)
    ).fetchone()
    return used is not None


def used_digests(connection: sqlite3.Connection) -> set[Any]:
    """The ``weights_sha256`` of every row, as stored (not checked)."""
    return {row[0] for row in connection.execute("SELECT weights_sha256 FROM models")}
