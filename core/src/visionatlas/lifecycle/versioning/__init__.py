"""The model registry: named, semantically versioned models with tags and metrics."""

from __future__ import annotations

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
from visionatlas.lifecycle.versioning.rows import ModelEntry
from visionatlas.lifecycle.versioning.semver import latest, normalize_version, parse_version
from visionatlas.lifecycle.versioning.store import REGISTRY_ENV, ModelRegistry, default_registry_dir

__all__ = [
    "REGISTRY_ENV",
    "DamagedEntry",
    "DamagedEntryError",
    "InvalidVersionError",
    "ModelEntry",
    "ModelRegistry",
    "RegistryError",
    "RegistryLockedError",
    "RegistryWarning",
    "UnknownModelError",
    "UnknownVersionError",
    "VersionExistsError",
    "default_registry_dir",
    "latest",
    "normalize_version",
    "parse_version",
]
