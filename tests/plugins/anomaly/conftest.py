"""Fixtures of the anomaly plugin tests."""

from __future__ import annotations

import warnings

import pytest
from anomaly_helpers import TINY, textures

from visionatlas_anomaly.config import UninformedStudentsConfig
from visionatlas_anomaly.model import UninformedStudents


@pytest.fixture(scope="session")
def fitted_detector() -> UninformedStudents:
    """A detector fitted on 8 tiny normal images (a few seconds on CPU)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        detector = UninformedStudents(UninformedStudentsConfig(**TINY))
        return detector.fit(textures(8, seed=1))
