"""Fixtures of the training engine's tests: a catalog with the toy task, one torch thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import train_toy

from visionatlas import Catalog, use_catalog

FAST = {"num_workers": 0, "epochs": 2}
"""Settings of a quick toy run."""


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models run fastest (and steadiest on a shared machine) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def toy_catalog() -> Iterator[Catalog]:
    """The process-wide catalog, with the toy task ``toyclass`` (architecture ``tiny``)."""
    with use_catalog(Catalog(plugins=[train_toy])) as catalog:
        yield catalog


@pytest.fixture
def registry_dir(tmp_path: Path) -> Path:
    return tmp_path / "registry"
