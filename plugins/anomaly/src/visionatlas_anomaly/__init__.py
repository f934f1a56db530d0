"""Anomaly detection for visionatlas: Uninformed Students (Bergmann et al., CVPR 2020)."""

__version__ = "0.1.0"
