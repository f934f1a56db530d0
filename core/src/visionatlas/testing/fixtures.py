"""The pytest fixtures of the ``pytest11`` plugin (re-exported by :mod:`visionatlas.testing`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from visionatlas.catalog import Catalog, use_catalog
from visionatlas.testing.plugins import isolated_catalog

__all__ = ["isolated_visionatlas_catalog", "visionatlas_catalog"]


@pytest.fixture
def visionatlas_catalog() -> Iterator[Catalog]:
    """A fresh catalog with normal discovery, process-wide for the test."""
    with use_catalog(Catalog()) as catalog:
        yield catalog


@pytest.fixture
def isolated_visionatlas_catalog() -> Iterator[Catalog]:
    """A fresh catalog with the built-in plugins only, process-wide for the test."""
    with isolated_catalog() as catalog:
        yield catalog
