"""Backbones: the unified interface and the built-in torchvision families."""
