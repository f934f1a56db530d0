"""Inspect models: parameter counts, output shapes and layer summaries.

Shapes are inferred on PyTorch's ``meta`` device: parameters, buffers and inputs are
replaced by meta tensors that carry shapes and dtypes but no data, so no activation (and no
copy of the weights) is allocated and nothing is computed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from visionatlas.errors import InvalidInputError, ShapeInferenceError

__all__ = [
    "LayerInfo",
    "ModelSummary",
    "count_parameters",
    "infer_output_shape",
    "shapes_of",
    "summary",
]

Shape = tuple[int, ...]


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of parameters of ``model`` (only those with ``requires_grad`` by default)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"count_parameters expects an nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _to_meta(value: Any) -> Any:
    if isinstance(value, Tensor):
        return torch.empty_like(value, device="meta")
    if isinstance(value, Mapping):
        return {k: _to_meta(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_meta(v) for v in value)
    return value


def shapes_of(value: Any) -> Any:
    """Shapes of tensors in ``value`` (tuples), keeping dicts, lists and named tuples."""
    if isinstance(value, Tensor):
        return tuple(value.shape)
    if isinstance(value, Mapping):
        return {k: shapes_of(v) for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(shapes_of(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(shapes_of(v) for v in value)
    return value


def _example(inputs: Sequence[int] | Tensor | Sequence[Tensor] | Mapping[str, Any]) -> Any:
    if isinstance(inputs, Tensor | Mapping):
        return _to_meta(inputs)
    if isinstance(inputs, Sequence) and inputs and all(isinstance(d, int) for d in inputs):
        shape = tuple(int(d) for d in inputs)
        if any(d < 1 for d in shape):
            raise ValueError(f"input shape must have positive sizes, got {shape}")
        return torch.empty(shape, device="meta")
    if isinstance(inputs, Sequence) and inputs:
        return _to_meta(list(inputs))
    raise TypeError(
        "inputs must be a shape such as (1, 3, 224, 224), a tensor, or a list of tensors; "
        f"got {inputs!r}"
    )


def _run_on_meta(model: nn.Module, inputs: Any) -> Any:
    example = _example(inputs)
    state = {
        **{name: _to_meta(p) for name, p in model.named_parameters(remove_duplicate=False)},
        **{name: _to_meta(b) for name, b in model.named_buffers(remove_duplicate=False)},
    }
    args = (example,) if not isinstance(example, tuple) else example
    try:
        with torch.no_grad():
            return functional_call(model, state, args, strict=False)
    except InvalidInputError:  # the model's input check: its message is the clearest
        raise
    except Exception as err:
        shown = shapes_of(inputs) if not isinstance(inputs, tuple | torch.Size) else inputs
        raise ShapeInferenceError(
            f"cannot infer the output shape of {type(model).__name__} for input {shown} "
            f"without data ({type(err).__name__}: {err}). Shapes are traced on the meta "
            "device, which fails for models whose control flow depends on tensor values"
        ) from err


def infer_output_shape(
    model: nn.Module, inputs: Sequence[int] | Tensor | Sequence[Tensor] | Mapping[str, Any]
) -> Any:
    """Output shape(s) of ``model`` for ``inputs``, without allocating activations.

    ``inputs`` is an input shape like ``(1, 3, 224, 224)``, or example tensors (only their
    shapes are used). The result mirrors the output structure: a tuple for a tensor, a dict
    or list of tuples for dict or list outputs.
    """
    return shapes_of(_run_on_meta(model, inputs))


@dataclass(frozen=True)
class LayerInfo:
    """One row of a :class:`ModelSummary`."""

    name: str
    type: str
    output_shape: Any
    num_params: int
    trainable_params: int
    depth: int


@dataclass(frozen=True)
class ModelSummary:
    """Layers with output shapes and parameter counts, plus totals."""

    model: str
    input_shape: Any
    output_shape: Any
    layers: tuple[LayerInfo, ...]
    total_params: int
    trainable_params: int

    def __str__(self) -> str:
        rows = [("Layer", "Type", "Output shape", "Params")]
        for layer in self.layers:
            rows.append(
                (
                    "  " * layer.depth + layer.name,
                    layer.type,
                    _format_shape(layer.output_shape),
                    f"{layer.num_params:,}",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [
            "  ".join(
                cell.rjust(widths[i]) if i == 3 else cell.ljust(widths[i])
                for i, cell in enumerate(row)
            ).rstrip()
            for row in rows
        ]
        rule = "-" * len(lines[0])
        lines.insert(1, rule)
        lines += [
            rule,
            f"{self.model}: input {_format_shape(self.input_shape)} -> output "
            f"{_format_shape(self.output_shape)}",
            f"Total parameters: {self.total_params:,}",
            f"Trainable parameters: {self.trainable_params:,}",
            f"Non-trainable parameters: {self.total_params - self.trainable_params:,}",
        ]
        return "\n".join(lines)


def _format_shape(shape: Any) -> str:
    if isinstance(shape, tuple) and all(isinstance(d, int) for d in shape):
        return "[" + ", ".join(str(d) for d in shape) + "]"
    if isinstance(shape, Mapping):
        return "{" + ", ".join(f"{k}: {_format_shape(v)}" for k, v in shape.items()) + "}"
    if isinstance(shape, (list, tuple)):
        return "[" + ", ".join(_format_shape(s) for s in shape) + "]"
    return str(shape)


@contextmanager
def _recording(model: nn.Module, max_depth: int | None) -> Iterator[dict[str, Any]]:
    outputs: dict[str, Any] = {}
    handles = []

    def hook_for(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            outputs[name] = shapes_of(output)

        return hook

    for name, module in model.named_modules():
        if not name:
            continue
        if max_depth is not None and name.count(".") >= max_depth:
            continue
        handles.append(module.register_forward_hook(hook_for(name)))
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def summary(
    model: nn.Module,
    inputs: Sequence[int] | Tensor | Sequence[Tensor] = (1, 3, 224, 224),
    *,
    max_depth: int | None = 2,
) -> ModelSummary:
    """Summarize ``model``: each layer (to ``max_depth``), its output shape and parameters.

    Runs on the meta device, like :func:`infer_output_shape`.
    """
    with _recording(model, max_depth) as outputs:
        output = shapes_of(_run_on_meta(model, inputs))
    layers = []
    for name, module in model.named_modules():
        if name not in outputs:
            continue
        params = list(module.parameters())
        layers.append(
            LayerInfo(
                name=name,
                type=type(module).__name__,
                output_shape=outputs[name],
                num_params=sum(p.numel() for p in params),
                trainable_params=sum(p.numel() for p in params if p.requires_grad),
                depth=name.count("."),
            )
        )
    shown_input = shapes_of(_example(inputs)) if not isinstance(inputs, tuple) else tuple(inputs)
    return ModelSummary(
        model=type(model).__name__,
        input_shape=shown_input,
        output_shape=output,
        layers=tuple(layers),
        total_params=count_parameters(model, trainable_only=False),
        trainable_params=count_parameters(model, trainable_only=True),
    )
