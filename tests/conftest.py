"""Shared fixtures: a fresh process-wide catalog per test, and installed fixture plugins."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from visionatlas import Catalog, set_catalog, use_catalog

FIXTURE_PLUGINS = Path(__file__).parent / "fixtures" / "plugins"
"""Source trees of small third-party plugin distributions (one folder each)."""

ENV_PREFIX = "VISIONATLAS_"


@pytest.fixture(autouse=True)
def _fresh_visionatlas_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts with no VISIONATLAS_* variables and an undiscovered catalog."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    previous = set_catalog(None)
    try:
        yield
    finally:
        set_catalog(previous)


@pytest.fixture(scope="session")
def fixture_plugins_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Install every fixture plugin distribution once, into a private target folder.

    The folder holds real ``*.dist-info`` metadata, so putting it on ``sys.path`` (or
    ``PYTHONPATH``) makes the plugins discoverable through their entry points.
    """
    target = tmp_path_factory.mktemp("visionatlas-fixture-plugins")
    packages = sorted(str(p) for p in FIXTURE_PLUGINS.iterdir() if (p / "pyproject.toml").is_file())
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
        "--no-index", "--no-cache-dir", "--disable-pip-version-check", "--target", str(target),
        *packages,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(
            f"installing the fixture plugins failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}",
            pytrace=False,
        )
    return target


@pytest.fixture
def fixture_plugins_on_path(fixture_plugins_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put the installed fixture plugins on ``sys.path`` for this test; return their folder."""
    monkeypatch.syspath_prepend(str(fixture_plugins_dir))
    return fixture_plugins_dir


@pytest.fixture
def third_party_catalog(fixture_plugins_on_path: Path) -> Iterator[Catalog]:
    """A fresh ``Catalog()`` (normal discovery, fixture plugins installed), made process-wide.

    Discovery is lazy: environment variables set in the test before the first query apply.
    """
    with use_catalog(Catalog()) as catalog:
        yield catalog
