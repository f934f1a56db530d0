"""Dense extraction versus patch-by-patch evaluation: equality and speed-up."""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass

import torch

from visionatlas_anomaly.networks import PatchNetwork, pad_for_patches

__all__ = ["DenseSpeed", "measure_dense_speed"]


@dataclass(frozen=True)
class DenseSpeed:
    patch_size: int
    image_size: int
    dense_s: float
    """Median seconds of one dense pass over the whole image."""
    patchwise_s: float
    """Seconds patch-by-patch evaluation takes for every pixel (extrapolated from
    ``sampled_pixels`` patches, timed in batches)."""
    sampled_pixels: int
    patch_batch: int
    """Patches per call of the patch-wise reference (1: literally patch by patch)."""
    max_abs_difference: float
    """Largest difference between both, over the sampled pixels."""
    width: float = 1.0
    """Hidden-channel multiplier of the timed network (1.0: the paper's network)."""
    nnpack: bool = True
    """Whether dense passes could use NNPACK (see :mod:`.dense_ops`); False: oneDNN only."""

    @property
    def speedup(self) -> float:
        return self.patchwise_s / self.dense_s

    def row(self) -> str:
        return (
            f"p={self.patch_size:<3} width {self.width:g}  "
            f"{self.image_size}x{self.image_size}  dense{'' if self.nnpack else ' (no NNPACK)'} "
            f"{self.dense_s:8.3f} s  patch-wise {self.patchwise_s:10.1f} s (from "
            f"{self.sampled_pixels} patches, {self.patch_batch} per call)  speed-up "
            f"{self.speedup:8.1f}x  max |diff| "
            f"{self.max_abs_difference:.2e}"
        )


@torch.no_grad()
def measure_dense_speed(
    patch_size: int,
    *,
    image_size: int = 256,
    sampled_pixels: int = 1024,
    patch_batch: int = 1,
    repeats: int = 3,
    seed: int = 0,
    width: float = 1.0,
    nnpack: bool = True,
) -> DenseSpeed:
    """Time dense extraction on one image and patch-wise evaluation of sampled pixels.

    The patch-wise reference runs ``patch_batch`` patches per call (1: one patch at a time,
    as a sliding-window evaluation would); its time is extrapolated to every pixel.
    ``nnpack=False`` times dense passes with NNPACK turned off (oneDNN only); with ``True``
    NNPACK is used where :mod:`.dense_ops` allows it, unless it was turned off globally.
    """
    if width <= 0:
        raise ValueError(f"width must be a positive channel multiplier, got {width}")
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = PatchNetwork(patch_size, width=width).eval()
    image = torch.rand(1, 3, image_size, image_size, generator=generator)
    dense_times = []
    nnpack = nnpack and torch._C._get_nnpack_enabled()
    with contextlib.nullcontext() if nnpack else torch.backends.nnpack.flags(enabled=False):
        network.dense(image)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            dense = network.dense(image)
            dense_times.append(time.perf_counter() - start)
    padded = pad_for_patches(image, patch_size)[0]
    pixels = torch.randperm(image_size * image_size, generator=generator)[:sampled_pixels]
    ys, xs = pixels // image_size, pixels % image_size
    patches = torch.stack(
        [
            padded[:, y : y + patch_size, x : x + patch_size]
            for y, x in zip(ys.tolist(), xs.tolist(), strict=True)
        ]
    )
    network(patches[:patch_batch])  # warm-up
    start = time.perf_counter()
    outputs = torch.cat([network(chunk) for chunk in torch.split(patches, patch_batch)])
    per_patch = (time.perf_counter() - start) / sampled_pixels
    reference = dense[0, :, ys, xs].T
    return DenseSpeed(
        patch_size=patch_size,
        image_size=image_size,
        dense_s=statistics.median(dense_times),
        patchwise_s=per_patch * image_size * image_size,
        sampled_pixels=sampled_pixels,
        patch_batch=patch_batch,
        max_abs_difference=float((outputs - reference).abs().max()),
        width=width,
        nnpack=nnpack,
    )
