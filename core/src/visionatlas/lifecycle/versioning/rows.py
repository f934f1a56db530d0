"""Validation of what goes into the registry index and of everything read back from it.

A value read from the index may have been edited by hand or damaged: it is checked (names
and versions as at registration, a hex SHA-256, JSON that parses into the expected shape)
before it reaches the file system or a model builder. A damaged row raises
:class:`~visionatlas.lifecycle.versioning.errors.DamagedEntryError` naming the entry and the field.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from visionatlas.lifecycle.versioning.errors import (
    DamagedEntry,
    DamagedEntryError,
    InvalidVersionError,
)
from visionatlas.lifecycle.versioning.semver import normalize_version

__all__ = [
    "SHA256",
    "check_name",
    "check_tags",
    "finite_json",
    "parse_row",
]

SHA256 = re.compile(r"^[0-9a-f]{64}$")
"""A weight file's digest: exactly 64 lowercase hex digits (it names the file)."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$")
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


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
