"""A deterministic synthetic detection and instance-segmentation set, in COCO layout.

Rectangles, ellipses and triangles (the classes) of many sizes and colours on textured
backgrounds, some overlapping (masks are the visible parts, boxes fit them), some small, a
few images with no object at all; image sides between 128 and 256 pixels. The same seed
writes the same bytes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CLASSES", "shape_outline", "textured_background", "write_synthetic_coco"]

CLASSES = ("rectangle", "ellipse", "triangle")
_MIN_VISIBLE = 24
"""Pixels an object must keep visible after the objects drawn over it (else dropped)."""


def textured_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A ``(height, width, 3)`` float image: a random base colour, smooth noise, stripes."""
    from PIL import Image

    coarse = rng.normal(0, 28, (height // 16 + 1, width // 16 + 1, 3))
    noise = (
        np.asarray(
            Image.fromarray(np.clip(coarse + 128, 0, 255).astype(np.uint8)).resize(
                (width, height), Image.Resampling.BILINEAR
            ),
            dtype=np.float32,
        )
        - 128
    )
    angle, period = rng.uniform(0, math.pi), rng.uniform(6, 24)
    yy, xx = np.mgrid[0:height, 0:width]
    stripes = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
    base = rng.uniform(60, 200, 3)
    image = base + noise + stripes[..., None] * rng.uniform(5, 30)
    return np.clip(image, 0, 255)


def shape_outline(
    kind: str, rng: np.random.Generator, cx: float, cy: float, size: float
) -> list[tuple[float, float]]:
    """Corners of a ``kind`` (one of :data:`CLASSES`) about ``size`` pixels across."""
    if kind == "rectangle":
        w, h = size * rng.uniform(0.5, 1.0), size * rng.uniform(0.5, 1.0)
        return [
            (cx - w / 2, cy - h / 2),
            (cx + w / 2, cy - h / 2),
            (cx + w / 2, cy + h / 2),
            (cx - w / 2, cy + h / 2),
        ]
    if kind == "ellipse":
        rx, ry = size * rng.uniform(0.25, 0.5), size * rng.uniform(0.25, 0.5)
        return [
            (cx + rx * math.cos(t), cy + ry * math.sin(t))
            for t in np.linspace(0, 2 * math.pi, 32, endpoint=False)
        ]
    turn = rng.uniform(0, 2 * math.pi)
    corners = [turn + k * 2 * math.pi / 3 for k in range(3)]
    return [(cx + size / 2 * math.cos(a), cy + size / 2 * math.sin(a)) for a in corners]


def _image(
    rng: np.random.Generator, index: int, folder: Path
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from PIL import Image, ImageDraw
    from pycocotools import mask as mask_utils

    height, width = (int(v) for v in rng.integers(128, 257, 2))
    canvas = Image.fromarray(textured_background(rng, height, width).astype(np.uint8))
    owner = Image.new("I", (width, height), 0)  # which object each pixel shows (0: none)
    draw, owner_draw = ImageDraw.Draw(canvas), ImageDraw.Draw(owner)
    count = 0 if rng.random() < 0.05 else int(rng.integers(1, 7))
    kinds = []
    for number in range(1, count + 1):
        kind = CLASSES[int(rng.integers(len(CLASSES)))]
        small = rng.random() < 0.25
        size = rng.uniform(10, 22) if small else rng.uniform(24, 0.5 * min(height, width))
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        points = shape_outline(kind, rng, cx, cy, size)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw.polygon(points, fill=colour)
        owner_draw.polygon(points, fill=number)
        kinds.append(kind)
    owners = np.asarray(owner, dtype=np.int32)
    annotations = []
    for number, kind in enumerate(kinds, start=1):
        visible = np.asfortranarray((owners == number).astype(np.uint8))
        if int(visible.sum()) < _MIN_VISIBLE:
            continue
        rle = mask_utils.encode(visible)
        x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
        rle["counts"] = rle["counts"].decode("ascii")
        annotations.append({
            "image_id": index, "category_id": CLASSES.index(kind) + 1, "bbox": [x, y, w, h],
            "area": float(visible.sum()), "iscrowd": 0, "segmentation": rle,
        })  # fmt: skip
    name = f"{index:05d}.png"
    canvas.save(folder / name)
    return {"id": index, "file_name": name, "width": width, "height": height}, annotations


def write_synthetic_coco(
    root: str | Path, *, train: int = 160, val: int = 40, seed: int = 0
) -> Path:
    """Write ``root/{train,val}/images/*.png`` and ``root/{train,val}/annotations.json``."""
    base = Path(root)
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val)):
        folder = base / split / "images"
        folder.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for index in range(count):
            image, objects = _image(rng, index, folder)
            images.append(image)
            annotations.extend(objects)
        for ann_id, ann in enumerate(annotations, start=1):
            ann["id"] = ann_id
        data = {
            "images": images,
            "annotations": annotations,
            "categories": [
                {"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(CLASSES)
            ],
        }
        (base / split / "annotations.json").write_text(json.dumps(data), encoding="utf-8")
    return base
