"""Errors of the model registry."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from visionatlas.errors import UnknownNameError, VisionAtlasError

__all__ = [
    "DamagedEntry",
    "DamagedEntryError",
    "InvalidVersionError",
    "RegistryError",
    "RegistryLockedError",
    "RegistryWarning",
    "UnknownModelError",
    "UnknownVersionError",
    "VersionExistsError",
]


class RegistryError(VisionAtlasError, RuntimeError):
    """The model registry cannot do what was asked (corrupt weights, unbuildable model...)."""


class RegistryLockedError(RegistryError):
    """Another process held the registry's write lock for longer than the timeout."""


class RegistryWarning(UserWarning):
    """Something in the registry needs attention but did not stop the operation."""


@dataclass(frozen=True)
class DamagedEntry:
    """An index row that cannot be trusted: which entry, which field, and what is wrong."""

    name: str
    version: str
    field: str
    reason: str

    def __str__(self) -> str:
        return (
            f"registry entry {self.name!r} version {self.version} is damaged: {self.field} "
            f"{self.reason}; delete it (visionatlas registry delete {self.name} "
            f"{self.version}) and register it again"
        )


class DamagedEntryError(RegistryError):
    """A registry entry's index row was edited or damaged; nothing was read from disk."""

    def __init__(self, damage: DamagedEntry) -> None:
        self.damage = damage
        super().__init__(str(damage))


class InvalidVersionError(VisionAtlasError, ValueError):
    """A version string is not a semantic version."""

    def __init__(self, version: object, accepted: str) -> None:
        self.version = version
        super().__init__(f"invalid version {version!r}: expected a semantic version {accepted}")


class VersionExistsError(RegistryError, FileExistsError):
    """The version is already registered and overwriting was not asked for."""

    def __init__(self, name: str, version: str) -> None:
        self.name = name
        self.version = version
        super().__init__(
            f"model {name!r} version {version} is already registered; register another "
            "version, or pass overwrite=True to replace it"
        )

    def __str__(self) -> str:
        return str(self.args[0])


class UnknownModelError(UnknownNameError):
    """No registered model has this name."""

    kind = "registered model"


class UnknownVersionError(UnknownNameError):
    """The model is registered, but not in this version."""

    kind = "version"

    def __init__(self, name: str, version: str, available: Iterable[str]) -> None:
        self.model = name
        super().__init__(version, available, context=f"of model {name!r}")
        # keep versions in semantic order (the base class sorts them as strings)
        self.available = list(available)
