"""A multi-layer perceptron head over a backbone's pooled pre-logits vector."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from torch import Tensor, nn

__all__ = ["ACTIVATIONS", "NORMS", "MLPHead"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "hardswish": nn.Hardswish,
}
"""Activation names accepted by :class:`MLPHead`."""

NORMS: dict[str, Callable[[int], nn.Module] | None] = {
    "layer": nn.LayerNorm,
    "batch": nn.BatchNorm1d,
    "none": None,
}
"""Normalization names accepted by :class:`MLPHead` (``"batch"`` needs batches of 2+)."""


def _choice(table: Mapping[str, object], value: str, what: str) -> None:
    if value not in table:
        raise ValueError(f"unknown {what} {value!r} for MLPHead; accepted: {', '.join(table)}")


class MLPHead(nn.Module):
    """``(N, in_features) -> (N, num_outputs)`` through hidden layers.

    Each hidden layer is dropout, linear, normalization and activation; the output layer
    is dropout and linear, as in :class:`~visionatlas.models.heads.linear.LinearHead`.
    """

    def __init__(
        self,
        *,
        in_features: int,
        num_outputs: int,
        dropout: float = 0.0,
        hidden_features: Sequence[int] = (512,),
        activation: str = "gelu",
        norm: str = "layer",
    ) -> None:
        super().__init__()
        widths = [int(w) for w in hidden_features]
        if in_features < 1 or num_outputs < 1 or any(w < 1 for w in widths):
            raise ValueError(
                "MLPHead needs in_features, num_outputs and every hidden width >= 1, got "
                f"in_features={in_features}, num_outputs={num_outputs}, "
                f"hidden_features={widths}"
            )
        _choice(ACTIVATIONS, activation, "activation")
        _choice(NORMS, norm, "norm")
        make_norm = NORMS[norm]
        layers: list[nn.Module] = []
        width = in_features
        for hidden in widths:
            layers += [nn.Dropout(p=dropout), nn.Linear(width, hidden)]
            if make_norm is not None:
                layers.append(make_norm(hidden))
            layers.append(ACTIVATIONS[activation]())
            width = hidden
        self.hidden = nn.Sequential(*layers)
        self.dropout = nn.Dropout(p=dropout)
        self.output = nn.Linear(width, num_outputs)

    @property
    def in_features(self) -> int:
        first = self.hidden[1] if len(self.hidden) else self.output
        if not isinstance(first, nn.Linear):  # pragma: no cover - built above
            raise TypeError("MLPHead layers were replaced")
        return first.in_features

    @property
    def num_outputs(self) -> int:
        return self.output.out_features

    def forward(self, x: Tensor) -> Tensor:
        return self.output(self.dropout(self.hidden(x)))
