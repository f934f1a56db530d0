"""The teacher/student layer tables of Uninformed Students, as plain data (imports no torch).

Each table lists the layers of the network that maps one ``p x p`` patch to one descriptor:
stride-1 convolutions without padding (LeakyReLU after every one but the last) and 2x2 max
pools of stride 2. The tables follow the paper's supplementary material, with two
corrections where its text contradicts its own output sizes (see ``docs``): the first
convolution of the 33 network is 5x5 (29x29 output) and the last of the 65 network is 1x1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "LAYER_TABLES",
    "SUPPORTED_PATCH_SIZES",
    "Conv",
    "Pool",
    "hidden_channels",
    "network_params",
    "receptive_field",
]


@dataclass(frozen=True)
class Conv:
    """A stride-1 convolution without padding; ``channels=None`` is the descriptor layer."""

    kernel: int
    channels: int | None


@dataclass(frozen=True)
class Pool:
    """A 2x2 max pool of stride 2 (floor mode)."""

    kernel: int = 2


Layer = Conv | Pool

LAYER_TABLES: dict[int, tuple[Layer, ...]] = {
    17: (Conv(6, 128), Conv(5, 256), Conv(5, 256), Conv(4, None)),
    33: (Conv(5, 128), Pool(), Conv(5, 256), Pool(), Conv(2, 256), Conv(4, None)),
    65: (
        Conv(5, 128),
        Pool(),
        Conv(5, 128),
        Pool(),
        Conv(5, 128),
        Pool(),
        Conv(4, 256),
        Conv(1, None),
    ),
}
"""Layers per patch size; the last convolution outputs the descriptor."""

SUPPORTED_PATCH_SIZES: tuple[int, ...] = tuple(sorted(LAYER_TABLES))


def hidden_channels(channels: int, width: float) -> int:
    """Channels of a hidden layer scaled by ``width`` (at least 8)."""
    return max(8, round(channels * width))


def _layers(patch_size: int) -> tuple[Layer, ...]:
    if patch_size not in LAYER_TABLES:
        raise ValueError(
            f"unsupported patch size {patch_size}; supported: {list(SUPPORTED_PATCH_SIZES)}"
        )
    return LAYER_TABLES[patch_size]


def network_params(patch_size: int, descriptor_dim: int, width: float = 1.0) -> int:
    """Parameters of one patch network (weights and biases of its convolutions)."""
    total = 0
    in_channels = 3
    for layer in _layers(patch_size):
        if isinstance(layer, Conv):
            out = (
                descriptor_dim if layer.channels is None else hidden_channels(layer.channels, width)
            )
            total += in_channels * out * layer.kernel * layer.kernel + out
            in_channels = out
    return total


def receptive_field(patch_size: int) -> int:
    """Input pixels (per side) that one descriptor depends on; at most ``patch_size``."""
    field, jump = 1, 1
    for layer in _layers(patch_size):
        field += (layer.kernel - 1) * jump
        if isinstance(layer, Pool):
            jump *= 2
    return field


def output_size(patch_size: int, size: int) -> int:
    """Spatial output size of the patch network (stride-2 pools) for a ``size`` input."""
    for layer in _layers(patch_size):
        size = size - layer.kernel + 1 if isinstance(layer, Conv) else size // 2
    return size


def model_params(
    patch_sizes: Sequence[int], num_students: int, descriptor_dim: int, width: float = 1.0
) -> int:
    """Parameters of a detector: per patch size one teacher and ``num_students`` students."""
    return sum((1 + num_students) * network_params(p, descriptor_dim, width) for p in patch_sizes)
