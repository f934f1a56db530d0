"""Semantic versions of registered models (python-semver), and ``"latest"``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from visionatlas.lifecycle.versioning.errors import InvalidVersionError

if TYPE_CHECKING:
    from semver import Version

__all__ = [
    "ACCEPTED_FORM",
    "LATEST",
    "is_latest",
    "is_version",
    "latest",
    "normalize_version",
    "parse_version",
    "sort_versions",
]

LATEST = "latest"
ACCEPTED_FORM = (
    "MAJOR.MINOR.PATCH with an optional -PRERELEASE and +BUILD (https://semver.org), "
    "e.g. 1.0.0, 2.1.0-rc.1 or 1.0.0+20240501; a leading 'v' is allowed"
)


def parse_version(text: object) -> Version:
    """Parse a semantic version; raise :class:`InvalidVersionError` naming the bad string."""
    from semver import Version

    if not isinstance(text, str):
        raise InvalidVersionError(text, ACCEPTED_FORM)
    stripped = text.strip()
    if stripped[:1] in ("v", "V"):
        stripped = stripped[1:]
    try:
        return Version.parse(stripped)
    except (ValueError, TypeError):
        raise InvalidVersionError(text, ACCEPTED_FORM) from None


def normalize_version(text: object) -> str:
    """The canonical form of a version (``v1.2.3`` -> ``1.2.3``)."""
    return str(parse_version(text))


def is_latest(text: object) -> bool:
    return isinstance(text, str) and text.strip().lower() == LATEST


def is_version(text: str) -> bool:
    """Whether ``text`` is a version in canonical form (as the registry stores them)."""
    try:
        return normalize_version(text) == text
    except InvalidVersionError:
        return False


def sort_versions(versions: Iterable[str]) -> list[str]:
    """Versions in ascending semantic-version precedence (prereleases before releases)."""
    return sorted(versions, key=parse_version)


def latest(versions: Iterable[str]) -> str | None:
    """The highest version by semantic-version precedence, or ``None`` if there is none."""
    ordered = sort_versions(versions)
    return ordered[-1] if ordered else None
