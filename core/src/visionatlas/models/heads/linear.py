"""A dropout + linear head over a backbone's pooled pre-logits vector."""

from __future__ import annotations

from torch import Tensor, nn

from visionatlas.models.heads.params import linear_head_params

__all__ = ["LinearHead", "linear_head_params"]


class LinearHead(nn.Module):
    """``(N, in_features) -> (N, num_outputs)``: dropout, then a linear layer."""

    def __init__(self, *, in_features: int, num_outputs: int, dropout: float = 0.0) -> None:
        super().__init__()
        if in_features < 1 or num_outputs < 1:
            raise ValueError(
                f"LinearHead needs in_features >= 1 and num_outputs >= 1, "
                f"got {in_features} and {num_outputs}"
            )
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(in_features, num_outputs)

    @property
    def in_features(self) -> int:
        return self.fc.in_features

    @property
    def num_outputs(self) -> int:
        return self.fc.out_features

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(x))
