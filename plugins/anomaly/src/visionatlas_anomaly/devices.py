"""Device names: checked when a config is validated, resolved against this machine when used."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from visionatlas_anomaly.errors import DeviceError

if TYPE_CHECKING:
    import torch

__all__ = ["DEVICE_TYPES", "available_devices", "check_device_name", "resolve_device"]

DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")
"""Device types the detector runs on; ``cuda`` and ``xpu`` take an index (``cuda:1``)."""
_PATTERN = re.compile(r"(cpu|cuda|mps|xpu)(?::(\d+))?")


def check_device_name(name: str) -> str:
    """Return ``name`` if it names a supported device type (no torch import, no hardware check)."""
    if _PATTERN.fullmatch(name) is None:
        raise ValueError(
            f"device {name!r} is not supported; expected 'cpu', 'cuda', 'cuda:N', 'mps' or "
            "'xpu' (whether this machine has it is checked when the detector is used)"
        )
    return name


def available_devices() -> list[str]:
    """The device names this machine's torch can use: ``cpu``, then any accelerators."""
    import torch

    names = ["cpu"]
    if torch.cuda.is_available():
        names += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    if torch.backends.mps.is_available():
        names.append("mps")
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        names += ["xpu", *(f"xpu:{i}" for i in range(xpu.device_count()))]
    return names


def resolve_device(name: str, *, hint: str = "") -> torch.device:
    """``torch.device(name)`` if this machine can run on it, else :class:`DeviceError`
    (``hint`` is appended to its message)."""
    import torch

    accepted = available_devices()
    match = _PATTERN.fullmatch(name)
    if match is None:
        raise DeviceError(name, "is not a device the detector runs on", accepted, hint)
    kind = match.group(1)
    if kind == "cpu" or name in accepted:
        return torch.device(name)
    if kind in accepted:  # an index beyond the devices present
        count = sum(1 for a in accepted if a.startswith(f"{kind}:"))
        reason = f"does not exist: torch sees {count} {kind} device(s)"
    else:
        reason = f"is not available: torch sees no {kind} device"
    raise DeviceError(name, reason, accepted, hint)
