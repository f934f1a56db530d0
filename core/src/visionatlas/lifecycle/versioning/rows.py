"""Rows of the registry index: what goes in, and the :class:`ModelEntry` each becomes.

Names and tags are validated before they go in. A value read from the index may have been
edited by hand or damaged: it is checked (names and versions as at registration, a hex
SHA-256, JSON that parses into the expected shape) before it reaches the file system or a
model builder. A damaged row raises
:class:`~visionatlas.lifecycle.versioning.errors.DamagedEntryError` naming the entry and the field.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import fnmatch
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionatlas.lifecycle.versioning.errors import (
    DamagedEntry,
    DamagedEntryError,
    InvalidVersionError,
)
from visionatlas.lifecycle.versioning.semver import normalize_version, sort_versions

if TYPE_CHECKING:
    from visionatlas.catalog import BuildInfo
    from visionatlas.lifecycle.files import WrittenFile
    from visionatlas.lifecycle.rebuild import Requirement

__all__ = [
    "SHA256",
    "ModelEntry",
    "check_name",
    "check_tags",
    "finite_json",
    "new_row",
    "parse_entries",
    "parse_row",
    "select_entries",
]

SHA256 = re.compile(r"^[0-9a-f]{64}$")
"""A weight file's digest: exactly 64 lowercase hex digits (it names the file)."""

_GLOB_CHARS = frozenset("*?[")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$")
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


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


def new_row(
    name: str,
    version: str,
    info: BuildInfo,
    needs: Iterable[Requirement],
    *,
    description: str,
    metrics: Mapping[str, Any],
    num_params: int,
    weights: WrittenFile,
    versions: Mapping[str, str],
) -> dict[str, Any]:
    """The ``models`` row of a new entry (``metrics`` already JSON values), stamped now."""
    return {
        "name": name,
        "version": version,
        "task": info.task,
        "architecture": info.architecture,
        "build_info": json.dumps(dataclasses.asdict(info), sort_keys=True),
        "requires": json.dumps([r.as_dict() for r in needs]),
        "description": description,
        "metrics": json.dumps(metrics, sort_keys=True, allow_nan=False),
        "num_params": num_params,
        "weights_sha256": weights.sha256,
        "weights_size": weights.size,
        "versions": json.dumps(versions, sort_keys=True),
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def parse_entries(
    rows: Iterable[Mapping[str, Any]],
    tags: Mapping[tuple[object, object], Iterable[object]],
    weights_path: Callable[[str], Path],
) -> tuple[list[ModelEntry], list[DamagedEntry]]:
    """The entries of sound ``rows`` (``tags`` by ``(name, version)``) and the damage of
    the others; ``weights_path`` gives a weight file's path from its digest."""
    entries: list[ModelEntry] = []
    damaged: list[DamagedEntry] = []
    for row in rows:
        try:
            fields = parse_row(row, tags.get((row["name"], row["version"]), ()))
        except DamagedEntryError as err:
            damaged.append(err.damage)
            continue
        entries.append(ModelEntry(**fields, weights_path=weights_path(fields["weights_sha256"])))
    return entries, damaged


def select_entries(
    entries: Iterable[ModelEntry], pattern: str | None, tags: Iterable[str]
) -> list[ModelEntry]:
    """The ``entries`` whose name matches ``pattern`` and that carry every tag in ``tags``,
    sorted by name, then by ascending version.

    ``pattern`` is a case-insensitive glob; without wildcards it matches as a substring.
    """
    wanted = set(tags)
    glob = None
    if pattern is not None:
        glob = pattern if _GLOB_CHARS & set(pattern) else f"*{pattern}*"
    found = [
        e
        for e in entries
        if wanted <= set(e.tags)
        and (glob is None or fnmatch.fnmatchcase(e.name.lower(), glob.lower()))
    ]
    by_name: dict[str, list[ModelEntry]] = {}
    for entry in found:
        by_name.setdefault(entry.name, []).append(entry)
    ordered: list[ModelEntry] = []
    for key in sorted(by_name):
        positions = {e.version: e for e in by_name[key]}
        ordered += [positions[v] for v in sort_versions(positions)]
    return ordered


def check_name(name: object) -> str:
    """A model name as accepted at registration; ``ValueError`` saying what is accepted."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"invalid model name {name!r}: use 1-128 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    return name


def check_tags(tags: str | Iterable[str]) -> tuple[str, ...]:
    """Tags as accepted at registration, without duplicates, in the given order."""
    items = [tags] if isinstance(tags, str) else list(tags)
    for tag in items:
        if not isinstance(tag, str) or not _TAG.match(tag):
            raise ValueError(
                f"invalid tag {tag!r}: use 1-64 letters, digits, '_', '-', '.' or ':', "
                "starting with a letter or digit"
            )
    return tuple(dict.fromkeys(items))


def finite_json(value: Any) -> Any:
    """``value`` with every NaN or infinite float as the string ``"NaN"``, ``"Infinity"``
    or ``"-Infinity"``, so that it can be written as standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return _NON_FINITE[repr(value)]
    if isinstance(value, Mapping):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(item) for item in value]
    return value


class _Damage(Exception):
    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field} {reason}")


def _json(row: Mapping[str, Any], field: str, kind: type) -> Any:
    raw = row[field]
    if not isinstance(raw, str):
        raise _Damage(field, f"is not JSON text (a {type(raw).__name__})")
    try:
        value = json.loads(raw)
    except ValueError as err:
        raise _Damage(field, f"is not valid JSON ({err})") from None
    if not isinstance(value, kind):
        raise _Damage(field, f"is a JSON {type(value).__name__}, expected a {kind.__name__}")
    return value


def _text(row: Mapping[str, Any], field: str) -> str:
    value = row[field]
    if not isinstance(value, str):
        raise _Damage(field, f"is a {type(value).__name__}, expected text")
    return value


def _count(row: Mapping[str, Any], field: str) -> int:
    value = row[field]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Damage(field, f"is {value!r}, expected an integer >= 0")
    return value


def parse_row(row: Mapping[str, Any], tags: Iterable[object]) -> dict[str, Any]:
    """The validated fields of one ``models`` row (and its tags), as ``ModelEntry`` takes
    them (without ``weights_path``); :class:`DamagedEntryError` if any is damaged."""
    name, version = row["name"], row["version"]
    try:
        return _parse(row, tags)
    except _Damage as damage:
        raise DamagedEntryError(
            DamagedEntry(str(name), str(version), damage.field, damage.reason)
        ) from None


def _parse(row: Mapping[str, Any], tags: Iterable[object]) -> dict[str, Any]:
    from visionatlas.lifecycle._statecodec import StateCodecError, decode_state
    from visionatlas.lifecycle.rebuild import Requirement, build_info_from_dict

    try:
        name = check_name(row["name"])
    except ValueError as err:
        raise _Damage("name", str(err)) from None
    version = row["version"]
    try:
        if normalize_version(version) != version:
            raise _Damage("version", f"{version!r} is not in canonical form")
    except InvalidVersionError as err:
        raise _Damage("version", str(err)) from None
    digest = row["weights_sha256"]
    if not isinstance(digest, str) or not SHA256.match(digest):
        raise _Damage("weights_sha256", f"is {digest!r}, expected 64 lowercase hex digits")
    try:
        info = build_info_from_dict(_json(row, "build_info", dict))
    except ValueError as err:
        raise _Damage("build_info", str(err)) from None
    if (info.task, info.architecture) != (row["task"], row["architecture"]):
        raise _Damage(
            "build_info",
            f"names {info.task}/{info.architecture}, but the row says "
            f"{row['task']!r}/{row['architecture']!r}",
        )
    try:
        metrics = decode_state(_json(row, "metrics", dict), {})
    except StateCodecError as err:
        raise _Damage("metrics", str(err)) from None
    versions = _json(row, "versions", dict)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in versions.items()):
        raise _Damage("versions", "must map library names to version strings")
    requires = _json(row, "requires", list)
    if not all(isinstance(r, dict) for r in requires):
        raise _Damage("requires", "must be a list of objects")
    checked_tags: list[str] = []
    for tag in tags:
        if not isinstance(tag, str):
            raise _Damage("tags", f"has {tag!r}, expected text")
        try:
            checked_tags += check_tags(tag)
        except ValueError as err:
            raise _Damage("tags", str(err)) from None
    return {
        "name": name,
        "version": version,
        "build_info": info,
        "tags": tuple(checked_tags),
        "metrics": metrics,
        "description": _text(row, "description"),
        "num_params": _count(row, "num_params"),
        "weights_sha256": digest,
        "weights_size": _count(row, "weights_size"),
        "created_at": _text(row, "created_at"),
        "versions": versions,
        "requires": tuple(Requirement.from_dict(r) for r in requires),
    }
