"""Where visionatlas and its plugins keep files they can recreate (torch-free)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "cache_dir"]

CACHE_ENV = "VISIONATLAS_CACHE_DIR"
"""Set it to keep every cached file under one folder of your choice."""


def cache_dir(*parts: str) -> Path:
    """``$VISIONATLAS_CACHE_DIR/<parts>``, else the user cache folder's ``visionatlas/<parts>``.

    The folder is not created. Plugins put what they can recreate here, each under its own
    name (``cache_dir("timm")``).
    """
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser().joinpath(*parts)
    import platformdirs

    return platformdirs.user_cache_path("visionatlas", appauthor=False).joinpath(*parts)
