"""Resolve lazy ``"module:attribute"`` references."""

from __future__ import annotations

import importlib
from typing import Any


def resolve(reference: Any) -> Any:
    """Return ``reference`` itself, or the object a ``"module:attribute"`` string names."""
    if not isinstance(reference, str):
        return reference
    module_name, _, attribute = reference.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


class LazyCall:
    """A builder that imports ``reference`` on first call and binds keyword arguments.

    Lets a plugin register one generic builder for many architectures (e.g. one per
    backbone) without importing torch: ``LazyCall("pkg.model:build", backbone="resnet50")``.
    """

    __slots__ = ("bound", "reference")

    def __init__(self, reference: str, **bound: Any) -> None:
        self.reference = reference
        self.bound = bound

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return resolve(self.reference)(*args, **self.bound, **kwargs)

    def __repr__(self) -> str:
        bound = ", ".join(f"{k}={v!r}" for k, v in self.bound.items())
        return f"LazyCall({self.reference!r}{', ' if bound else ''}{bound})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LazyCall) and (self.reference, self.bound) == (
            other.reference,
            other.bound,
        )

    def __hash__(self) -> int:
        return hash((self.reference, tuple(sorted(self.bound.items()))))
