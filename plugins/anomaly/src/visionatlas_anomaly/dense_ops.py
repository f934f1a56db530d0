"""The operations of dense passes: convolutions (NNPACK where it wins) and max pools.

Dense passes run stride-1 convolutions without padding over whole images. On CPU, NNPACK
(built into PyTorch) computes undilated ones with FFT or Winograd transforms, which need
several times fewer multiply-adds than a direct convolution for the 4x4 to 6x6 kernels of the
patch networks: the p = 17 network's dense pass over a 256x256 image takes about half the
time of oneDNN's direct convolution (see ``docs/tasks/anomaly-detection.md``). NNPACK is used
only where it is the faster and valid choice: float32 CPU tensors, no dilation, no gradient
needed, and at least :data:`NNPACK_MIN_PIXELS` output pixels per image (on small images its
transforms cost more than they save). Everything else runs :func:`torch.nn.functional.conv2d`
in NHWC layout, which oneDNN runs 1.3-2x faster than NCHW on CPU.
``torch.backends.nnpack.flags(enabled=False)`` turns NNPACK off.

Without autograd, the stride-1 2x2 max pools of dense passes are two elementwise maxima of
shifted views: the same values as :func:`torch.nn.functional.max_pool2d`, several times
faster on CPU (that kernel also computes argmax indices for every output).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["NNPACK_MIN_PIXELS", "dense_conv2d", "dense_max_pool2d", "uses_nnpack"]

NNPACK_MIN_PIXELS = 64 * 64
"""Output pixels per image from which NNPACK is used (below, oneDNN is as fast or faster)."""

_NNPACK_MAX_KERNEL = 16


@functools.cache
def _nnpack_ready() -> bool:
    # What torch.backends.nnpack.is_available() returns (that wrapper is untyped). Asking
    # also initializes NNPACK; its convolution fails if called before.
    return torch._nnpack_available()


def uses_nnpack(x: Tensor, weight: Tensor, dilation: int = 1) -> bool:
    """Whether :func:`dense_conv2d` computes this convolution with NNPACK."""
    kernel_h, kernel_w = weight.shape[-2:]
    out_pixels = (x.shape[-2] - kernel_h + 1) * (x.shape[-1] - kernel_w + 1)
    return (
        dilation == 1
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and max(kernel_h, kernel_w) <= _NNPACK_MAX_KERNEL
        and out_pixels >= NNPACK_MIN_PIXELS
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
        and torch._C._get_nnpack_enabled()
        and _nnpack_ready()
    )


def dense_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, dilation: int = 1) -> Tensor:
    """``F.conv2d(x, weight, bias, dilation=dilation)`` (stride 1, no padding), computed fast."""
    if uses_nnpack(x, weight, dilation):
        # One image per call: NNPACK's single-image (inference) algorithm; its batched one
        # is slower than oneDNN here.
        outputs = [
            torch._nnpack_spatial_convolution(image.unsqueeze(0), weight, bias, 0)
            for image in x.contiguous()
        ]
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)
    x = x.contiguous(memory_format=torch.channels_last)
    return F.conv2d(x, weight, bias, dilation=dilation)


def dense_max_pool2d(x: Tensor, dilation: int = 1) -> Tensor:
    """``F.max_pool2d(x, kernel_size=2, stride=1, dilation=dilation)``, computed fast."""
    if torch.is_grad_enabled() and x.requires_grad:
        # Training: max_pool2d's backward (through its indices) is the faster one.
        return F.max_pool2d(x, kernel_size=2, stride=1, dilation=dilation)
    d = dilation
    rows = torch.maximum(x[..., :-d, :], x[..., d:, :])
    return torch.maximum(rows[..., :, :-d], rows[..., :, d:])
