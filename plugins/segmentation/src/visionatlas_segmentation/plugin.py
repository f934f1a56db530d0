"""Hook implementations (imports no torch)."""

from __future__ import annotations

from visionatlas import hookimpl


@hookimpl
def visionatlas_api_version() -> int:
    return 1
