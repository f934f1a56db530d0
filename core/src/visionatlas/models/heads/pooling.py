"""Heads that pool a backbone's final feature map themselves (GeM, attention pooling).

They declare ``input_kind = "feature_map"``: a
:class:`~visionatlas.models.composition.BackboneHeadModel` then feeds them the backbone's final map
``(N, C, H, W)`` with ``in_features = C`` (the backbone's ``out_channels``), instead of the
average-pooled pre-logits vector.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

__all__ = ["AttentionPoolHead", "GeMHead", "default_num_heads"]


def _check_sizes(cls: str, in_features: int, num_outputs: int) -> None:
    if in_features < 1 or num_outputs < 1:
        raise ValueError(
            f"{cls} needs in_features >= 1 and num_outputs >= 1, "
            f"got {in_features} and {num_outputs}"
        )


class GeMHead(nn.Module):
    """Generalized-mean pooling, then dropout and a linear layer.

    ``pooled = mean(clamp(x, eps) ** p) ** (1 / p)`` over the spatial positions
    (Radenovic et al., 2018): ``p = 1`` is average pooling, large ``p`` approaches max
    pooling. ``p`` is learned unless ``learn_p=False``.
    """

    input_kind: ClassVar[str] = "feature_map"

    def __init__(
        self,
        *,
        in_features: int,
        num_outputs: int,
        dropout: float = 0.0,
        p: float = 3.0,
        learn_p: bool = True,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        _check_sizes("GeMHead", in_features, num_outputs)
        if p <= 0 or eps <= 0:
            raise ValueError(f"GeMHead needs p > 0 and eps > 0, got p={p} and eps={eps}")
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=learn_p)
        self.eps = eps
        self.dropout = nn.Dropout(p=dropout)
        self.output = nn.Linear(in_features, num_outputs)

    def pool(self, x: Tensor) -> Tensor:
        """``(N, C, H, W) -> (N, C)`` generalized mean."""
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(-2, -1)).pow(1.0 / self.p)

    def forward(self, x: Tensor) -> Tensor:
        return self.output(self.dropout(self.pool(x)))


def default_num_heads(channels: int) -> int:
    """The largest of 8, 4, 2, 1 that divides ``channels``."""
    return next(h for h in (8, 4, 2, 1) if channels % h == 0)


class AttentionPoolHead(nn.Module):
    """A learned query attends over the feature map's positions; then dropout and linear.

    The positions are layer-normalized tokens ``(N, H*W, C)``; one learned query token
    attends to them with multi-head attention, giving one ``(N, C)`` vector whatever the
    input size. ``num_heads`` must divide ``in_features`` (default: the largest of 8, 4,
    2, 1 that does).
    """

    input_kind: ClassVar[str] = "feature_map"

    def __init__(
        self,
        *,
        in_features: int,
        num_outputs: int,
        dropout: float = 0.0,
        num_heads: int | None = None,
    ) -> None:
        super().__init__()
        _check_sizes("AttentionPoolHead", in_features, num_outputs)
        heads = default_num_heads(in_features) if num_heads is None else num_heads
        if heads < 1 or in_features % heads:
            raise ValueError(
                f"AttentionPoolHead needs num_heads >= 1 dividing in_features={in_features}, "
                f"got {heads}"
            )
        self.norm = nn.LayerNorm(in_features)
        self.query = nn.Parameter(torch.zeros(1, 1, in_features))
        nn.init.trunc_normal_(self.query, std=0.02)
        self.attention = nn.MultiheadAttention(in_features, heads, batch_first=True)
        self.dropout = nn.Dropout(p=dropout)
        self.output = nn.Linear(in_features, num_outputs)

    def pool(self, x: Tensor) -> Tensor:
        """``(N, C, H, W) -> (N, C)``: the query's attention-weighted sum of positions."""
        tokens = self.norm(x.flatten(2).transpose(1, 2))
        query = self.query.expand(x.shape[0], -1, -1)
        pooled, _ = self.attention(query, tokens, tokens, need_weights=False)
        return pooled.squeeze(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.output(self.dropout(self.pool(x)))
