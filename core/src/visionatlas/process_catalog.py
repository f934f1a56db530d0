"""The process-wide catalog behind ``va.list_*``/``va.create_*``, and the one now building."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from visionatlas.building import BUILDING

if TYPE_CHECKING:
    from visionatlas.catalog import Catalog

__all__ = ["current_catalog", "get_catalog", "set_catalog", "use_catalog"]

_default: Catalog | None = None
_default_lock = threading.Lock()


def current_catalog() -> Catalog:
    """The catalog building a model right now (builders use it), else :func:`get_catalog`."""
    return BUILDING.get() or get_catalog()


def get_catalog() -> Catalog:
    """The process-wide catalog, created (not yet discovered) on first call."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                from visionatlas.catalog import Catalog

                _default = Catalog()
    return _default


def set_catalog(catalog: Catalog | None) -> Catalog | None:
    """Replace the process-wide catalog (``None``: rediscover on next use); return the old."""
    global _default
    with _default_lock:
        previous, _default = _default, catalog
    return previous


@contextmanager
def use_catalog(catalog: Catalog) -> Iterator[Catalog]:
    """Make ``catalog`` the process-wide one inside a ``with`` block."""
    previous = set_catalog(catalog)
    try:
        yield catalog
    finally:
        set_catalog(previous)
