"""Fixtures of the oriented-detection tests: one thread, small detector options.

Detectors run many small convolutions; with several OpenMP threads on a loaded 2-core
machine they can be an order of magnitude slower than with one, so these tests use one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def small() -> dict[str, Any]:
    """A resnet18 detector at 128-160 px with a narrow pyramid: fast on the CPU."""
    return {"backbone": "resnet18", "min_size": 128, "max_size": 160, "fpn_channels": 64}
