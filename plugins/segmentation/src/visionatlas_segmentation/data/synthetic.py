"""A deterministic synthetic semantic-segmentation set, in the mask-folder layout.

The shapes of the detection set (rectangles, ellipses, triangles of many sizes and
colours, some overlapping, some small, on textured backgrounds; image sides 128 to 256
pixels), with palette PNG masks: 0 is the background, each shape kind its class, and a
one-pixel border around every shape marked ``IGNORE_INDEX`` as VOC marks its borders.
The same seed writes the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from visionatlas_segmentation.data.folders import CLASSES_FILE, IGNORE_INDEX

__all__ = ["CLASSES", "palette", "write_synthetic_masks"]

CLASSES = ("background", "rectangle", "ellipse", "triangle")


def palette(count: int) -> list[int]:
    """A PNG palette: VOC's colours for ``count`` classes, ``IGNORE_INDEX`` in VOC's cream."""
    from visionatlas_detection.predictions import class_colours

    colours = [*class_colours(count), *[(0, 0, 0)] * (IGNORE_INDEX - count), (224, 224, 192)]
    return [channel for colour in colours for channel in colour]


def _sample(rng: np.random.Generator, image_path: Path, mask_path: Path) -> None:
    from PIL import Image, ImageDraw

    from visionatlas_detection.data.synthetic import shape_outline, textured_background

    height, width = (int(v) for v in rng.integers(128, 257, 2))
    canvas = Image.fromarray(textured_background(rng, height, width).astype(np.uint8))
    mask = Image.new("P", (width, height), 0)
    mask.putpalette(palette(len(CLASSES)))
    draw, mask_draw = ImageDraw.Draw(canvas), ImageDraw.Draw(mask)
    for _ in range(0 if rng.random() < 0.05 else int(rng.integers(1, 7))):
        label = int(rng.integers(1, len(CLASSES)))
        small = rng.random() < 0.25
        size = rng.uniform(10, 22) if small else rng.uniform(24, 0.5 * min(height, width))
        points = shape_outline(
            CLASSES[label], rng, rng.uniform(0, width), rng.uniform(0, height), size
        )
        draw.polygon(points, fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        mask_draw.polygon(points, fill=label, outline=IGNORE_INDEX)
    canvas.save(image_path)
    mask.save(mask_path)


def write_synthetic_masks(
    root: str | Path, *, train: int = 480, val: int = 40, seed: int = 0
) -> Path:
    """Write ``root/{train,val}/{images,masks}/*.png`` and ``root/classes.txt``."""
    base = Path(root)
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val)):
        for sub in ("images", "masks"):
            (base / split / sub).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            name = f"{index:05d}.png"
            _sample(rng, base / split / "images" / name, base / split / "masks" / name)
    (base / CLASSES_FILE).write_text("\n".join(CLASSES) + "\n", encoding="utf-8")
    return base
