"""Helpers of the anomaly plugin tests: tiny images and tiny detector settings."""

from __future__ import annotations

import torch

TINY = {
    "patch_sizes": (17,),
    "width": 0.25,
    "num_students": 2,
    "teacher_steps": 5,
    "student_steps": 40,
    "teacher_crop_size": 8,
    "crop_size": 16,
    "teacher_distillation": "off",
    "progress": False,
}


def textures(count: int, *, size: int = 32, defect: bool = False, seed: int = 0) -> torch.Tensor:
    """Noisy grey textures; ``defect`` adds a bright 8x8 square in the middle."""
    generator = torch.Generator().manual_seed(seed)
    images = 0.5 + 0.08 * torch.randn(count, 3, size, size, generator=generator)
    if defect:
        centre = size // 2
        images[:, :, centre - 4 : centre + 4, centre - 4 : centre + 4] = 0.97
    return images.clamp(0.0, 1.0)
