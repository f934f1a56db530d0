"""Object detection for visionatlas: torchvision detectors on any multi-scale backbone."""

__version__ = "0.1.0"
