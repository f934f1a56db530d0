"""Score statistics of one patch size, standardized by distance to the image border.

The descriptors of pixels closer than ``(p - 1) / 2`` to a border are computed from
reflected padding, so their regression errors and variances follow a different
distribution than interior pixels (largest in the corners, where both axes are
reflected). Each pixel therefore belongs to a *border bin* ``(by, bx)``, its distances to
the nearest horizontal and vertical border capped at ``margin = (p - 1) / 2``; the interior is the
single bin ``(margin, margin)``. Means and standard deviations are kept per bin, estimated on
held-out normal images, so that a score of 3 means "3 standard deviations above normal"
everywhere in the image.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["MIN_BIN_SAMPLES", "ScaleStatistics", "border_bins"]

MIN_BIN_SAMPLES = 16
"""Border bins with fewer calibration pixels than this use the statistics of all pixels."""


def border_bins(height: int, width: int, margin: int, device: torch.device) -> Tensor:
    """``(H, W)`` flat bin index ``by * (margin + 1) + bx`` of every pixel, where ``by`` and
    ``bx`` are its distances to the nearest row and column border, capped at ``margin``."""
    ys = torch.arange(height, device=device)
    xs = torch.arange(width, device=device)
    by = torch.minimum(ys, height - 1 - ys).clamp_max(margin)
    bx = torch.minimum(xs, width - 1 - xs).clamp_max(margin)
    return by[:, None] * (margin + 1) + bx[None, :]


class ScaleStatistics(nn.Module):
    """Normalization statistics of one patch size, kept as buffers (saved with the model).

    ``descriptor_mean``/``descriptor_std`` normalize the teacher's descriptors (training
    images); ``error_moments``/``variance_moments`` are ``(2, margin + 1, margin + 1)`` means
    and standard deviations per border bin (held-out normal images).
    """

    def __init__(self, patch_size: int, descriptor_dim: int) -> None:
        super().__init__()
        self.margin = (patch_size - 1) // 2
        bins = (self.margin + 1, self.margin + 1)
        self.descriptor_mean: Tensor
        self.descriptor_std: Tensor
        self.error_moments: Tensor
        self.variance_moments: Tensor
        self.register_buffer("descriptor_mean", torch.zeros(descriptor_dim))
        self.register_buffer("descriptor_std", torch.ones(descriptor_dim))
        self.register_buffer("error_moments", torch.stack([torch.zeros(bins), torch.ones(bins)]))
        self.register_buffer("variance_moments", torch.stack([torch.zeros(bins), torch.ones(bins)]))

    def standardize(self, values: Tensor, moments: Tensor) -> Tensor:
        """``(N, H, W)`` raw errors or variances -> scores in standard deviations."""
        height, width = values.shape[-2:]
        bins = border_bins(height, width, self.margin, values.device)
        mean = moments[0].flatten()[bins]
        std = moments[1].flatten()[bins]
        return (values - mean) / std

    def accumulator(self, device: torch.device) -> Tensor:
        """Zeroed ``(3, bins)`` float64 sums (count, sum, sum of squares) for :meth:`add`."""
        return torch.zeros(3, (self.margin + 1) ** 2, dtype=torch.float64, device=device)

    def add(self, sums: Tensor, values: Tensor) -> None:
        """Add ``(N, H, W)`` calibration values to ``sums`` (from :meth:`accumulator`)."""
        height, width = values.shape[-2:]
        bins = border_bins(height, width, self.margin, values.device).expand_as(values).flatten()
        flat = values.flatten().double()
        sums[0].index_add_(0, bins, torch.ones_like(flat))
        sums[1].index_add_(0, bins, flat)
        sums[2].index_add_(0, bins, flat.pow(2))

    @staticmethod
    def moments(sums: Tensor) -> Tensor:
        """``(2, bins)`` mean and standard deviation per bin from accumulated ``sums``.

        Bins with fewer than :data:`MIN_BIN_SAMPLES` values (images smaller than the patch)
        take the statistics of all values.
        """
        count, total, squares = sums
        n = count.sum()
        all_mean = total.sum() / n
        all_var = (squares.sum() / n - all_mean.pow(2)) * n / (n - 1).clamp_min(1)
        enough = count >= MIN_BIN_SAMPLES
        safe = count.clamp_min(2)
        mean = torch.where(enough, total / safe, all_mean)
        # Unbiased (n - 1) variances, as torch.std gives.
        var = torch.where(enough, (squares / safe - mean.pow(2)) * safe / (safe - 1), all_var)
        return torch.stack([mean, var.clamp_min(0).sqrt().clamp_min(1e-12)]).float()
