"""The segmentation loss: pixel-wise cross-entropy, plus the weighted auxiliary term."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.nn import functional as F

if TYPE_CHECKING:
    from visionatlas_segmentation.config import SegmentationConfig

__all__ = ["SegmentationLoss"]


class SegmentationLoss(nn.Module):
    """Cross-entropy over pixels, ignoring ``ignore_index``; ``loss = main + w * aux``.

    Returns ``{"loss", "loss_main"}`` and ``"loss_aux"`` when auxiliary logits are given.
    Class weights are a non-persistent buffer: they follow ``.to(device)`` but stay out of
    the ``state_dict``, which keeps the model's keys those of torchvision.
    """

    class_weights: Tensor | None

    def __init__(
        self,
        num_classes: int,
        *,
        ignore_index: int = 255,
        aux_weight: float = 0.5,
        class_weights: Sequence[float] | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if class_weights is not None and len(class_weights) != num_classes:
            raise ValueError(
                f"class_weights has {len(class_weights)} values but the model has "
                f"num_classes={num_classes}; give one weight per class"
            )
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.aux_weight = aux_weight
        self.label_smoothing = label_smoothing
        weights = None if class_weights is None else torch.tensor(class_weights)
        self.register_buffer("class_weights", weights, persistent=False)

    @classmethod
    def from_config(cls, config: SegmentationConfig, num_classes: int) -> SegmentationLoss:
        """The loss a model built from ``config`` trains with."""
        return cls(
            num_classes,
            ignore_index=config.ignore_index,
            aux_weight=config.aux_loss_weight,
            class_weights=config.class_weights,
            label_smoothing=config.label_smoothing,
        )

    def cross_entropy(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Mean cross-entropy of ``(N, C, H, W)`` logits against ``(N, H, W)`` targets."""
        weight = self.class_weights
        if weight is not None and weight.dtype != logits.dtype:
            weight = weight.to(logits.dtype)
        return F.cross_entropy(
            logits,
            targets,
            weight=weight,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
        )

    def _term(self, logits: Tensor, targets: Tensor, any_counted: bool) -> Tensor:
        if any_counted:
            return self.cross_entropy(logits, targets)
        # The mean over no pixel would be NaN: keep the graph, learn nothing from the batch.
        return logits.sum() * 0.0

    def forward(
        self,
        logits: Tensor,
        targets: Tensor,
        aux_logits: Tensor | None = None,
        *,
        any_counted: bool = True,
    ) -> dict[str, Tensor]:
        """Losses of a batch; ``any_counted=False`` (every pixel ignored) gives zero losses."""
        main = self._term(logits, targets, any_counted)
        if aux_logits is None:
            return {"loss": main, "loss_main": main}
        aux = self._term(aux_logits, targets, any_counted)
        return {"loss": main + self.aux_weight * aux, "loss_main": main, "loss_aux": aux}
