"""Semantic-segmentation predictions: class-index mask PNGs and PNG overlays.

:func:`write_masks` runs a trained model on image files (resized to its input size and
normalized as in training; the logits are resized back) and writes ``masks/NAME.png``,
palette PNGs of class indices at the image's own size, ``overlays/NAME.png``, the image
with every class but the background tinted and the present classes named, and
``predictions.json``, which lists the files and each image's class pixel fractions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from visionatlas.training.protocol import PredictRequest
from visionatlas_detection.predictions import (
    OVERLAYS,
    PREDICTIONS_FILE,
    class_colours,
    write_json,
)

__all__ = ["MASKS", "write_masks"]

MASKS = "masks"
_BACKGROUND = {"background", "__background__"}


def _inputs(paths: Sequence[Path], size: tuple[int, int]) -> tuple[list[Tensor], Tensor]:
    from torchvision.transforms import v2
    from torchvision.transforms.v2 import functional as TF

    from visionatlas.training.images import IMAGENET_MEAN, IMAGENET_STD, read_rgb

    pixels = [TF.pil_to_tensor(read_rgb(path)) for path in paths]
    prepare = v2.Compose([
        v2.Resize(size, antialias=True), v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])  # fmt: skip
    return pixels, torch.stack([prepare(p) for p in pixels])


def _overlay(image: Tensor, mask: Tensor, labels: Sequence[str]) -> Tensor:
    from PIL import Image, ImageDraw
    from torchvision.utils import draw_segmentation_masks

    colours = class_colours(len(labels))
    shown = [
        c for c in range(len(labels)) if labels[c].lower() not in _BACKGROUND and (mask == c).any()
    ]
    if shown:
        masks = torch.stack([mask == c for c in shown])
        image = draw_segmentation_masks(image, masks, alpha=0.5, colors=[colours[c] for c in shown])
    picture = Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())
    draw = ImageDraw.Draw(picture)
    for row, c in enumerate(shown):
        y = 2 + 12 * row
        draw.rectangle((2, y, 11, y + 9), fill=colours[c], outline=(255, 255, 255))
        draw.text((14, y - 1), labels[c], fill=(255, 255, 255), stroke_width=1, stroke_fill=0)
    return torch.from_numpy(np.array(picture)).permute(2, 0, 1)


def write_masks(
    model: nn.Module, images: Sequence[Path], request: PredictRequest
) -> dict[str, Any]:
    """Predict on ``images``; write mask PNGs, overlays and ``predictions.json`` into
    ``request.out``; returns ``{"images", "files"}``."""
    from PIL import Image

    from visionatlas_segmentation.data.synthetic import palette

    out, labels = request.out, list(request.labels)
    for folder in (MASKS, OVERLAYS):
        (out / folder).mkdir(parents=True, exist_ok=True)
    model.eval().to(request.device)
    entries = []
    for start in range(0, len(images), request.batch_size):
        batch = list(images[start : start + request.batch_size])
        pixels, inputs = _inputs(batch, request.input_size)
        with torch.inference_mode():
            logits = model(inputs.to(request.device)).cpu()
        for offset, (path, image) in enumerate(zip(batch, pixels, strict=True)):
            name = request.names[start + offset] if request.names else path.stem
            size = image.shape[-2:]
            scores = F.interpolate(logits[offset : offset + 1], size=size, mode="bilinear")
            mask = scores.argmax(1)[0]
            picture = Image.fromarray(mask.to(torch.uint8).numpy(), mode="P")
            picture.putpalette(palette(len(labels)))
            picture.save(out / MASKS / f"{name}.png")
            Image.fromarray(
                _overlay(image, mask, labels).permute(1, 2, 0).contiguous().numpy()
            ).save(out / OVERLAYS / f"{name}.png")
            counts = torch.bincount(mask.flatten(), minlength=len(labels)).tolist()
            total = max(1, mask.numel())
            entries.append({
                "file_name": str(path), "mask": f"{MASKS}/{name}.png",
                "overlay": f"{OVERLAYS}/{name}.png", "width": int(size[1]), "height": int(size[0]),
                "fractions": {labels[c]: n / total for c, n in enumerate(counts) if n},
            })  # fmt: skip
    write_json(out / PREDICTIONS_FILE, {"images": entries, "classes": labels})
    return {"images": len(entries), "files": [PREDICTIONS_FILE, f"{MASKS}/", f"{OVERLAYS}/"]}
