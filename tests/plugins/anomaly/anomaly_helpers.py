"""Helpers of the anomaly plugin tests: tiny images and tiny detector settings."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

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


TINY_FLAGS = [
    "--patch-sizes", "17", "--students", "2", "--teacher-steps", "5", "--student-steps", "40",
    "--width", "0.25", "--no-progress",
]  # fmt: skip
"""``visionatlas anomaly fit`` flags of the tiny detector (add ``--config`` for its crops)."""
TINY_CROPS = {"teacher_crop_size": 8, "crop_size": 16, "teacher_distillation": "off"}
"""The options of ``TINY`` that have no ``fit`` flag (a ``--config`` file)."""


def write_pngs(folder: Path, images: torch.Tensor) -> list[Path]:
    """Write ``(N, 3, H, W)`` images in [0, 1] as ``000.png``, ``001.png``, ... in ``folder``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        array = (image.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        path = folder / f"{i:03d}.png"
        Image.fromarray(array).save(path)
        paths.append(path)
    return paths


def png_header_bomb(path: Path, width: int, height: int) -> Path:
    """A ~100-byte PNG whose header declares ``width x height`` 1-bit pixels (and whose
    pixel data is far too short): a decompression-bomb header, harmless unless decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path
