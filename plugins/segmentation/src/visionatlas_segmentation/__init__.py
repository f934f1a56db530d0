"""Semantic and instance segmentation architectures for visionatlas, on any multi-scale backbone."""

__version__ = "0.1.0"
