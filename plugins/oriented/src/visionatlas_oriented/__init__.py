"""Oriented object detection for visionatlas (task ``oriented_object_detection``)."""

__version__ = "0.1.0"
