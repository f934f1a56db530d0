"""The model registry: named, semantically versioned models with tags and metrics."""

from __future__ import annotations

from visionatlas.versioning.errors import (
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
from visionatlas.versioning.semver import latest, normalize_version, parse_version
from visionatlas.versioning.store import (
    REGISTRY_ENV,
    ModelEntry,
    ModelRegistry,
    default_registry_dir,
)

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
