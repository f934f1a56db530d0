"""Patch networks and their fast dense evaluation over whole images.

A :class:`PatchNetwork` maps a ``p x p`` patch to one descriptor. :meth:`PatchNetwork.dense`
computes the descriptor of every pixel of an image in one pass with the same weights: each
stride-2 max pool becomes a stride-1 pool and every later convolution and pool is dilated by
the product of the strides removed before it (the dilation form of Bailer et al.'s
multi-pooling and unwarping). The result equals running the network on the ``p x p`` patch
centred on each pixel of the image padded by ``(p - 1) / 2``. The convolutions of dense
passes and their pools run through :mod:`.dense_ops` (fast algorithms where they win).
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionatlas_anomaly.dense_ops import dense_conv2d, dense_max_pool2d
from visionatlas_anomaly.layers import (
    LAYER_TABLES,
    Conv,
    hidden_channels,
    output_size,
    receptive_field,
)

__all__ = ["LEAKY_SLOPE", "PatchNetwork", "pad_for_patches"]

LEAKY_SLOPE = 5e-3


def pad_for_patches(images: Tensor, patch_size: int) -> Tensor:
    """Pad images by ``(p - 1) / 2`` on each side (reflection; replication if too small)."""
    half = (patch_size - 1) // 2
    height, width = images.shape[-2:]
    mode = "reflect" if half < min(height, width) else "replicate"
    return F.pad(images, (half, half, half, half), mode=mode)


class PatchNetwork(nn.Module):
    """The teacher/student network of one patch size (a layer table of :mod:`.layers`)."""

    def __init__(self, patch_size: int, descriptor_dim: int = 128, width: float = 1.0) -> None:
        super().__init__()
        if patch_size not in LAYER_TABLES:
            raise ValueError(
                f"unsupported patch size {patch_size}; supported: {sorted(LAYER_TABLES)}"
            )
        if output_size(patch_size, patch_size) != 1:
            raise ValueError(f"layer table of patch size {patch_size} does not end in 1x1")
        self.patch_size = patch_size
        self.descriptor_dim = descriptor_dim
        self.receptive_field = receptive_field(patch_size)
        self.convs = nn.ModuleList()
        self._plan: list[str] = []  # "conv" or "pool", in order
        in_channels = 3
        for layer in LAYER_TABLES[patch_size]:
            if isinstance(layer, Conv):
                out = (
                    descriptor_dim
                    if layer.channels is None
                    else hidden_channels(layer.channels, width)
                )
                self.convs.append(nn.Conv2d(in_channels, out, layer.kernel))
                self._plan.append("conv")
                in_channels = out
            else:
                self._plan.append("pool")

    def _run(self, x: Tensor, *, dense: bool) -> Tensor:
        dilation = 1
        convs = iter(self.convs)
        last = len(self.convs) - 1
        index = 0
        for step in self._plan:
            if step == "pool":
                if dense:
                    x = dense_max_pool2d(x, dilation)
                    dilation *= 2
                else:
                    x = F.max_pool2d(x, kernel_size=2, stride=2)
                continue
            conv = cast(nn.Conv2d, next(convs))
            if dense:
                x = dense_conv2d(x, conv.weight, conv.bias, dilation)
            else:
                x = F.conv2d(x, conv.weight, conv.bias)
            if index < last:
                x = F.leaky_relu(x, LEAKY_SLOPE, inplace=dense and not torch.is_grad_enabled())
            index += 1
        return x

    def forward(self, patches: Tensor) -> Tensor:
        """Descriptors ``(N, D)`` of ``(N, 3, p, p)`` patches."""
        p = self.patch_size
        if patches.dim() != 4 or tuple(patches.shape[-2:]) != (p, p):
            raise ValueError(
                f"expected patches of shape (N, C, {p}, {p}), got {tuple(patches.shape)}"
            )
        return self._run(patches, dense=False).flatten(1)

    def dense_valid(self, padded: Tensor) -> Tensor:
        """Descriptors of every ``p x p`` window of ``padded``: ``(N, D, H - p + 1, W - p + 1)``.

        The value at ``(i, j)`` is ``forward(padded[..., i:i+p, j:j+p])``.
        """
        p = self.patch_size
        height, width = padded.shape[-2:]
        if height < p or width < p:
            raise ValueError(f"input {height}x{width} is smaller than the patch size {p}")
        out = self._run(padded, dense=True)
        return out[..., : height - p + 1, : width - p + 1].contiguous()

    def dense(self, images: Tensor) -> Tensor:
        """One descriptor per pixel: ``(N, 3, H, W)`` images -> ``(N, D, H, W)``."""
        return self.dense_valid(pad_for_patches(images, self.patch_size))


def patchwise(network: PatchNetwork, images: Tensor, batch_size: int = 256) -> Tensor:
    """Reference: run ``network`` on the patch around every pixel, one patch at a time.

    Slow by design (it is what :meth:`PatchNetwork.dense` replaces); for tests and timing.
    """
    p = network.patch_size
    padded = pad_for_patches(images, p)
    n, c, height, width = images.shape
    patches = padded.unfold(2, p, 1).unfold(3, p, 1)  # (N, C, H, W, p, p)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c, p, p)
    outputs = [network(chunk) for chunk in torch.split(patches, batch_size)]
    return torch.cat(outputs).reshape(n, height, width, -1).permute(0, 3, 1, 2)
