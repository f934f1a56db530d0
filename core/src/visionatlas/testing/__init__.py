"""Helpers for testing visionatlas plugins; also a pytest plugin (``pytest11`` entry point).

Fixtures (available in every pytest session where visionatlas is installed):

``visionatlas_catalog``
    A fresh catalog with normal discovery (built-ins and entry points), process-wide for
    the test.
``isolated_visionatlas_catalog``
    A fresh catalog with the built-ins only, process-wide for the test.

Checks raise :class:`CheckFailed` (an ``AssertionError``) with a message that says what is
wrong, so they read well in pytest output::

    from visionatlas.testing import check_architecture, check_backbone, check_plugin

    def test_my_plugin():
        check_plugin("my-plugin")  # also checks every backbone and architecture it registered
        check_backbone("my_backbone")
        check_architecture("classification", "my_net")
        check_architecture("segmentation", "deeplabv3", config={"backbone": "my_backbone"})
        check_training("my_task", data="tests/data/tiny", architecture="resnet18")

This package is imported when pytest starts, so it imports neither torch nor pydantic at
module level. Its modules: ``plugins`` (catalogs, :func:`check_plugin`), ``backbones``,
``architectures``, ``training`` and ``fixtures``.
"""

from __future__ import annotations

from visionatlas.testing._common import CheckFailed
from visionatlas.testing.architectures import ArchitectureCheck, check_architecture
from visionatlas.testing.backbones import BackboneCheck, check_backbone
from visionatlas.testing.plugins import check_plugin, isolated_catalog
from visionatlas.testing.training import TrainingCheck, check_training

try:  # pytest finds the fixtures here; without pytest the helpers still work
    from visionatlas.testing.fixtures import (
        isolated_visionatlas_catalog as isolated_visionatlas_catalog,
    )
    from visionatlas.testing.fixtures import visionatlas_catalog as visionatlas_catalog
except ImportError:  # pragma: no cover - pytest is a test-time dependency
    pass

__all__ = [
    "ArchitectureCheck",
    "BackboneCheck",
    "CheckFailed",
    "TrainingCheck",
    "check_architecture",
    "check_backbone",
    "check_plugin",
    "check_training",
    "isolated_catalog",
]
