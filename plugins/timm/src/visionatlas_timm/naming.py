"""Backbone names of timm models: ``timm/<timm model name>`` (torch-free)."""

from __future__ import annotations

__all__ = ["NAMESPACE", "backbone_name", "timm_name"]

NAMESPACE = "timm/"
"""Prefix of every timm backbone, so that none clashes with a built-in backbone name."""


def backbone_name(model: str) -> str:
    """``"resnet50"`` -> ``"timm/resnet50"``."""
    return f"{NAMESPACE}{model}"


def timm_name(backbone: str) -> str:
    """``"timm/resnet50"`` -> ``"resnet50"``; refuses a name outside the namespace."""
    if not backbone.startswith(NAMESPACE):
        raise ValueError(
            f"{backbone!r} is not a timm backbone name (they start with {NAMESPACE!r})"
        )
    return backbone[len(NAMESPACE) :]
