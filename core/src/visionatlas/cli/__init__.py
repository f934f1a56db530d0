"""The ``visionatlas`` command line."""

from visionatlas.cli.main import main

__all__ = ["main"]
