"""Errors (and a warning) of the anomaly plugin, in the visionatlas exception family.

Older errors stay beside their modules (``DatasetLayoutError`` in ``data``,
``InvalidImagesError`` in ``inputs``, ``NotFittedError`` in ``model``).
"""

from __future__ import annotations

from visionatlas.errors import VisionAtlasError

__all__ = [
    "DetectorFileError",
    "DeviceError",
    "FitDivergedError",
    "NonFiniteError",
    "UnknownImageSizeWarning",
]


class DeviceError(VisionAtlasError, ValueError):
    """A device name torch cannot use on this machine; the message lists the accepted ones."""

    def __init__(self, device: str, reason: str, accepted: list[str], hint: str = "") -> None:
        self.device = device
        self.accepted = accepted
        listing = ", ".join(repr(name) for name in accepted)
        super().__init__(f"device {device!r} {reason}; accepted on this machine: {listing}{hint}")


class NonFiniteError(VisionAtlasError, ArithmeticError):
    """A loss, a statistic, the threshold or a score is NaN or infinite."""


class FitDivergedError(NonFiniteError):
    """Fitting stopped because a stage produced NaN or infinite values.

    ``stage`` names it: ``"teacher distillation for patch size 17"``,
    ``"self-supervised teacher training for patch size 17"``,
    ``"student training for patch size 17"`` or ``"calibration"``.
    """

    def __init__(self, stage: str, detail: str) -> None:
        self.stage = stage
        super().__init__(f"fit stopped in {stage}: {detail}")


class DetectorFileError(VisionAtlasError, ValueError):
    """A saved detector is damaged or inconsistent (the message names the file and the value)."""


class UnknownImageSizeWarning(UserWarning):
    """A fitted detector was loaded from a file that does not record its image size (saved
    before format 3): images are scored at their own size, unchecked."""
