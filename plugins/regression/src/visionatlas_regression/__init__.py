"""Regression architectures for visionatlas (task ``regression``)."""

__version__ = "0.1.0"
