"""Split nested state (an optimizer's ``state_dict()``) into JSON and a flat tensor dict.

The JSON holds the structure and plain values; every tensor is replaced by a reference to
its key in the tensor dict, which is saved with safetensors. Decoding executes no code and
unpickles nothing: only JSON scalars, lists, dicts, tuples and tensors come back.

Encoding of values that JSON lacks:

- tensor: ``{"$tensor": key}``
- tuple: ``{"$tuple": [...]}``
- dict whose keys are not all strings (optimizers key their state by parameter index), or
  that has a key starting with ``$``: ``{"$items": [[key, value], ...]}``
- float NaN and infinities: ``{"$float": "nan" | "inf" | "-inf"}``
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["StateCodecError", "decode_state", "encode_state", "json_values"]

_TENSOR, _TUPLE, _ITEMS, _FLOAT = "$tensor", "$tuple", "$items", "$float"


class StateCodecError(ValueError):
    """A value cannot be stored without pickling, or stored state is malformed."""


def encode_state(value: Any, prefix: str) -> tuple[Any, dict[str, Tensor]]:
    """Return ``(json_structure, tensors)``; tensor keys start with ``prefix``."""
    tensors: dict[str, Tensor] = {}
    structure = _encode(value, [prefix], tensors)
    return structure, tensors


def _tensor_key(path: list[str], tensors: Mapping[str, Any]) -> str:
    key = ".".join(path)
    candidate, n = key, 1
    while candidate in tensors:
        n += 1
        candidate = f"{key}#{n}"
    return candidate


def _encode(value: Any, path: list[str], tensors: dict[str, Tensor]) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        key = _tensor_key(path, tensors)
        tensors[key] = value.detach()
        return {_TENSOR: key}
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        if math.isfinite(number):
            return number
        return {_FLOAT: "nan" if math.isnan(number) else ("inf" if number > 0 else "-inf")}
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v, [*path, str(i)], tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, [*path, str(i)], tensors) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        plain = all(isinstance(k, str) and not k.startswith("$") for k in value)
        if plain:
            return {k: _encode(v, [*path, k], tensors) for k, v in value.items()}
        return {
            _ITEMS: [
                [_encode(k, [*path, "key"], tensors), _encode(v, [*path, str(k)], tensors)]
                for k, v in value.items()
            ]
        }
    raise StateCodecError(
        f"cannot store {type(value).__module__}.{type(value).__qualname__} at "
        f"{'.'.join(path)!r}: only tensors, numbers, strings, booleans, None, lists, tuples "
        "and dicts are stored (no pickling)"
    )


def decode_state(structure: Any, tensors: Mapping[str, Tensor]) -> Any:
    """Rebuild the value that :func:`encode_state` split."""
    if structure is None or isinstance(structure, (bool, int, float, str)):
        return structure
    if isinstance(structure, list):
        return [decode_state(v, tensors) for v in structure]
    if not isinstance(structure, dict):
        raise StateCodecError(f"unexpected {type(structure).__name__} in stored state")
    if len(structure) == 1:
        ((tag, payload),) = structure.items()
        if tag == _TENSOR:
            if payload not in tensors:
                raise StateCodecError(f"stored state refers to a missing tensor {payload!r}")
            return tensors[payload]
        if tag == _TUPLE:
            return tuple(decode_state(v, tensors) for v in _as_list(payload, tag))
        if tag == _ITEMS:
            pairs = _as_list(payload, tag)
            if not all(isinstance(p, list) and len(p) == 2 for p in pairs):
                raise StateCodecError(f"malformed {_ITEMS} entry in stored state")
            return {decode_state(k, tensors): decode_state(v, tensors) for k, v in pairs}
        if tag == _FLOAT:
            if payload not in ("nan", "inf", "-inf"):
                raise StateCodecError(f"malformed {_FLOAT} value {payload!r} in stored state")
            return float(payload)
    if any(k.startswith("$") for k in structure):
        raise StateCodecError(f"unknown tag in stored state: {sorted(structure)}")
    return {k: decode_state(v, tensors) for k, v in structure.items()}


def _as_list(payload: Any, tag: str) -> list[Any]:
    if not isinstance(payload, list):
        raise StateCodecError(f"malformed {tag} value in stored state")
    return payload


def json_values(value: Any, where: str) -> Any:
    """User values (metrics, extras) as strict JSON, tagged like :func:`encode_state`.

    0-d tensors and numpy scalars become numbers; other tensors and objects are refused
    with a :class:`StateCodecError` naming where they are.
    """
    structure, tensors = encode_state(_plain(value, where), where)
    if tensors:  # pragma: no cover - _plain turned every tensor into a number
        raise StateCodecError(f"{where} must not hold tensors")
    return structure


def _plain(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", None) == 0:
        return _plain(item(), where)
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise StateCodecError(f"{where} keys must be strings, got {list(value)!r}")
        return {k: _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise StateCodecError(
        f"{where} holds a {type(value).__name__}; it must hold JSON values "
        "(numbers, strings, booleans, None, lists and dicts)"
    )
