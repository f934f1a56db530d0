"""Parameter counts of torchvision's segmentation heads, computed without torch.

They match ``torchvision.models.segmentation``'s ``FCNHead`` and ``DeepLabHead`` (whose ASPP
has 256 channels), so catalog metadata can be filled in at registration time.
"""

from __future__ import annotations

__all__ = ["ASPP_CHANNELS", "deeplab_head_params", "fcn_head_params"]

ASPP_CHANNELS = 256
"""Width of torchvision's ASPP and of the DeepLabV3 head after it."""


def _conv(in_channels: int, out_channels: int, kernel: int, *, bias: bool) -> int:
    return in_channels * out_channels * kernel * kernel + (out_channels if bias else 0)


def _conv_bn(in_channels: int, out_channels: int, kernel: int) -> int:
    """A bias-free convolution followed by a BatchNorm (weight and bias)."""
    return _conv(in_channels, out_channels, kernel, bias=False) + 2 * out_channels


def fcn_head_params(in_channels: int, num_classes: int) -> int:
    """``FCNHead(in_channels, num_classes)``: 3x3 conv to ``in_channels // 4``, BN, 1x1 conv."""
    inner = in_channels // 4
    return _conv_bn(in_channels, inner, 3) + _conv(inner, num_classes, 1, bias=True)


def deeplab_head_params(in_channels: int, num_classes: int, num_rates: int = 3) -> int:
    """``DeepLabHead(in_channels, num_classes, atrous_rates)`` with ``num_rates`` rates."""
    width = ASPP_CHANNELS
    aspp = (
        _conv_bn(in_channels, width, 1)  # 1x1 branch
        + num_rates * _conv_bn(in_channels, width, 3)  # atrous branches
        + _conv_bn(in_channels, width, 1)  # image pooling branch
        + _conv_bn((num_rates + 2) * width, width, 1)  # projection
    )
    return aspp + _conv_bn(width, width, 3) + _conv(width, num_classes, 1, bias=True)
