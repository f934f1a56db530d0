"""The visionatlas exception family.

Every exception subclasses a builtin so that existing ``except LookupError`` or
``except ValueError`` clauses keep working, and carries the context needed to act on it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "DatasetError",
    "DuplicateNameError",
    "ImageReadError",
    "ImageTooLargeError",
    "IncompatibleBackboneError",
    "InvalidArgumentError",
    "InvalidInputError",
    "NonFiniteInputError",
    "PluginError",
    "PretrainedWeightsError",
    "RejectedSpecError",
    "ShapeInferenceError",
    "UnknownArchitectureError",
    "UnknownBackboneError",
    "UnknownHeadError",
    "UnknownNameError",
    "UnknownTaskError",
    "UnknownTrainingError",
    "VisionAtlasError",
]


class VisionAtlasError(Exception):
    """Base class of every error raised by visionatlas."""


def close_matches(name: object, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` candidates that look like ``name`` (case-insensitive; none for a non-str)."""
    if not isinstance(name, str):
        return []
    pool = {c.lower(): c for c in candidates}
    return [pool[m] for m in difflib.get_close_matches(name.lower(), list(pool), n=n, cutoff=0.6)]


def _listing(names: list[str], limit: int = 12) -> str:
    if not names:
        return "none are registered"
    shown = ", ".join(names[:limit])
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return shown + more


def listing(names: Iterable[str], limit: int = 12) -> str:
    """``names`` joined by commas, at most ``limit`` of them (then a count of the rest)."""
    return _listing(list(names), limit)


class InvalidArgumentError(VisionAtlasError, TypeError):
    """An argument of the wrong type, such as ``task=None``; says what is accepted."""

    def __init__(self, argument: str, value: object, accepted: str) -> None:
        self.argument = argument
        self.value = value
        self.accepted = accepted
        super().__init__(
            f"{argument} must be {accepted}, got {_shown(value)} ({type(value).__name__})"
        )


def _shown(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class UnknownNameError(VisionAtlasError, LookupError):
    """A task, architecture, backbone or head name that the catalog does not hold."""

    kind = "name"

    def __init__(self, name: str, available: Iterable[str], *, context: str = "") -> None:
        self.name = name
        self.available = sorted(available)
        self.suggestions = close_matches(name, self.available)
        where = f" {context}" if context else ""
        message = f"unknown {self.kind} {name!r}{where}"
        if self.suggestions:
            message += f"; did you mean {' or '.join(repr(s) for s in self.suggestions)}?"
        else:
            message += "."
        message += f" Available: {_listing(self.available)}."
        super().__init__(message)

    def __str__(self) -> str:  # KeyError-style repr quoting is unhelpful here
        return str(self.args[0])


class UnknownTaskError(UnknownNameError):
    """No installed plugin provides this task."""

    kind = "task"


class UnknownArchitectureError(UnknownNameError):
    """The task exists but has no architecture of this name."""

    kind = "architecture"


class UnknownBackboneError(UnknownNameError):
    """No registered backbone has this name."""

    kind = "backbone"


class UnknownHeadError(UnknownNameError):
    """No registered head has this name."""

    kind = "head"


class UnknownTrainingError(UnknownNameError):
    """The task exists but no installed plugin makes it trainable."""

    kind = "trainable task"


class PluginError(VisionAtlasError, RuntimeError):
    """A plugin failed: it could not be imported, its hook raised, or its code broke."""

    def __init__(self, message: str, *, plugin: str | None = None) -> None:
        self.plugin = plugin
        super().__init__(message)


class DuplicateNameError(VisionAtlasError, ValueError):
    """A name is already registered; the message names both providers."""

    def __init__(self, kind: str, name: str, existing: str, incoming: str) -> None:
        self.kind = kind
        self.name = name
        self.existing = existing
        self.incoming = incoming
        super().__init__(
            f"{kind} {name!r} from {incoming} is already registered by {existing}; "
            f"the first registration is kept"
        )


class RejectedSpecError(VisionAtlasError, KeyError):
    """A lookup, in a registration hook, of a spec that was refused as malformed.

    ``kind`` is ``"backbone"``, ``"task"``, ...; ``reason`` is why it was refused. The hook
    that looks it up keeps what it registered before the lookup (see the hook reference).
    """

    def __init__(self, kind: str, name: str, reason: str, plugin: str) -> None:
        self.kind = kind
        self.name = name
        self.reason = reason
        self.plugin = plugin
        super().__init__(name)

    def __str__(self) -> str:
        return (
            f"{self.kind} {self.name!r} was rejected when plugin {self.plugin!r} registered it: "
            f"{self.reason}"
        )


class IncompatibleBackboneError(VisionAtlasError, ValueError):
    """A backbone cannot serve an architecture (for example it lacks multi-scale features)."""


class PretrainedWeightsError(VisionAtlasError, FileNotFoundError):
    """Pretrained weights were asked for but cannot be found, fetched or loaded."""


class ShapeInferenceError(VisionAtlasError, RuntimeError):
    """Output shapes could not be inferred without running the model on real data."""


class InvalidInputError(VisionAtlasError, ValueError, TypeError):
    """Images given to a model do not fit its input contract (type, shape or dtype).

    It subclasses both ``ValueError`` (a wrong shape) and ``TypeError`` (a wrong type or
    dtype), so ``except`` clauses written for either keep working. ``index`` is the image's
    position in the batch or list when one image is at fault, else ``None``.
    """

    def __init__(self, message: str, *, index: int | None = None) -> None:
        self.index = index
        super().__init__(message)


class NonFiniteInputError(InvalidInputError):
    """Images hold NaN or infinite pixel values (raised by the opt-in value check).

    ``counts`` maps the index of each bad image to its ``(nan, +inf, -inf)`` counts.
    """

    def __init__(self, message: str, *, counts: dict[int, tuple[int, int, int]]) -> None:
        self.counts = dict(counts)
        super().__init__(message, index=min(self.counts) if self.counts else None)


class DatasetError(VisionAtlasError, ValueError):
    """A dataset cannot be used as given: a missing or empty folder, a bad CSV row, ...

    The message names the file or folder (``path``, when one is at fault) and what is
    accepted.
    """

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        self.path = path
        super().__init__(message)


class ImageReadError(DatasetError):
    """An image file cannot be opened or decoded (unknown format, truncated, corrupt)."""

    def __init__(self, path: Path, reason: str) -> None:
        self.reason = reason
        super().__init__(f"cannot read image {path}: {reason}", path=path)


class ImageTooLargeError(ImageReadError):
    """An image declares more pixels than PIL reads safely (a decompression-bomb guard)."""

    def __init__(self, path: Path, pixels: int | None, limit: int) -> None:
        self.pixels = pixels
        self.limit = limit
        declared = "" if pixels is None else f"{pixels:,} pixels, "
        super().__init__(
            path,
            f"it declares {declared}more than the {limit:,}-pixel limit "
            "(PIL.Image.MAX_IMAGE_PIXELS, a guard against decompression bombs); shrink the "
            "file, or raise the limit in Python if the image is trusted",
        )
