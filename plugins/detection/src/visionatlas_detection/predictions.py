"""Detections written for people and programs: COCO JSON and PNG overlays.

:func:`write_detections` runs a trained detector (or Mask R-CNN) on image files and writes
``predictions.json``, a COCO dataset whose annotations carry a ``score`` (``bbox`` as
``[x, y, width, height]`` pixels; ``segmentation`` as compressed RLE for masks; category
ids are the model's labels, named in ``categories``), and ``overlays/NAME.png``, each image
with its boxes, masks and ``class score`` captions drawn by torchvision's drawing utilities.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from visionatlas.training.protocol import PredictRequest

__all__ = ["OVERLAYS", "PREDICTIONS_FILE", "class_colours", "write_detections", "write_json"]

PREDICTIONS_FILE = "predictions.json"
OVERLAYS = "overlays"


def class_colours(count: int) -> list[tuple[int, int, int]]:
    """``count`` distinct RGB colours, the same for a class in every image (VOC's map)."""
    colours = []
    for index in range(count):
        r = g = b = 0
        value = index
        for bit in range(8):
            r |= ((value >> 0) & 1) << (7 - bit)
            g |= ((value >> 1) & 1) << (7 - bit)
            b |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        colours.append((r, g, b))
    return colours


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON atomically (a temporary file, then a rename)."""
    scratch = path.with_name(f".{path.name}.tmp")
    scratch.write_text(json.dumps(data), encoding="utf-8")
    os.replace(scratch, path)


def _load(path: Path) -> Tensor:
    from torchvision.transforms.v2 import functional as F

    from visionatlas.training.images import read_rgb

    return F.pil_to_tensor(read_rgb(path))


def _encode(mask: Tensor) -> dict[str, Any]:
    import numpy as np
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.numpy().astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return dict(rle)


def _overlay(image: Tensor, kept: dict[str, Tensor], labels: Sequence[str]) -> Tensor:
    from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

    palette = class_colours(max(len(labels), 1) + 1)
    colours = [palette[int(label) % len(palette)] for label in kept["labels"]]
    if "masks" in kept and len(kept["masks"]):
        image = draw_segmentation_masks(image, kept["masks"], alpha=0.45, colors=colours)
    captions = [
        f"{labels[int(label)] if int(label) < len(labels) else label} {float(score):.2f}"
        for label, score in zip(kept["labels"], kept["scores"], strict=True)
    ]
    if not len(kept["boxes"]):
        return image
    return draw_bounding_boxes(image, kept["boxes"], labels=captions, colors=colours, width=2)


def write_detections(
    model: nn.Module, images: Sequence[Path], request: PredictRequest
) -> dict[str, Any]:
    """Predict on ``images`` and write ``predictions.json`` and overlays into
    ``request.out``; returns ``{"images", "detections", "files"}``."""
    from visionatlas_detection.metrics import MASK_THRESHOLD

    out, labels = request.out, list(request.labels)
    (out / OVERLAYS).mkdir(parents=True, exist_ok=True)
    model.eval().to(request.device)
    entries: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for start in range(0, len(images), request.batch_size):
        batch = list(images[start : start + request.batch_size])
        pixels = [_load(path) for path in batch]
        inputs = [(p.float() / 255).to(request.device) for p in pixels]
        with torch.inference_mode():
            outputs = model(inputs)
        for offset, (path, image, output) in enumerate(zip(batch, pixels, outputs, strict=True)):
            image_id = start + offset + 1
            name = request.names[start + offset] if request.names else path.stem
            keep = output["scores"] >= request.score_threshold
            kept = {k: v[keep].cpu() for k, v in output.items() if isinstance(v, Tensor)}
            if "masks" in kept:
                probs = kept["masks"]
                kept["masks"] = (probs[:, 0] if probs.dim() == 4 else probs) > MASK_THRESHOLD
            entries.append({
                "id": image_id, "file_name": str(path), "width": int(image.shape[-1]),
                "height": int(image.shape[-2]), "overlay": f"{OVERLAYS}/{name}.png",
            })  # fmt: skip
            for index in range(len(kept["boxes"])):
                x0, y0, x1, y1 = (float(v) for v in kept["boxes"][index])
                label = int(kept["labels"][index])
                annotation: dict[str, Any] = {
                    "id": len(annotations) + 1, "image_id": image_id, "category_id": label,
                    "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                    "score": float(kept["scores"][index]), "iscrowd": 0,
                }  # fmt: skip
                if "masks" in kept:
                    annotation["segmentation"] = _encode(kept["masks"][index])
                    annotation["area"] = float(kept["masks"][index].sum())
                annotations.append(annotation)
            _save_png(_overlay(image, kept, labels), out / OVERLAYS / f"{name}.png")
    categories = [{"id": i, "name": n} for i, n in enumerate(labels) if i > 0]
    write_json(
        out / PREDICTIONS_FILE,
        {"images": entries, "annotations": annotations, "categories": categories},
    )
    return {
        "images": len(entries),
        "detections": len(annotations),
        "files": [PREDICTIONS_FILE, f"{OVERLAYS}/"],
    }


def _save_png(image: Tensor, path: Path) -> None:
    from PIL import Image

    Image.fromarray(image.permute(1, 2, 0).contiguous().numpy()).save(path)
