"""Classification architectures for visionatlas (task ``classification``)."""

__version__ = "0.1.0"
