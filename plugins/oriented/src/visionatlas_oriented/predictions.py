"""Rotated detections written for people and programs: JSON, DOTA text files, PNG overlays.

:func:`write_oriented_predictions` runs a trained oriented detector on image files and
writes ``predictions.json`` (per image, each detection's ``box`` ``[cx, cy, w, h, angle]``
le90, ``polygon`` of 8 corner coordinates, ``label``, ``class`` and ``score``),
``labelTxt/NAME.txt`` (DOTA's layout, ``x1 y1 ... x4 y4 class score`` per line) and
``overlays/NAME.png`` (each image with its rotated boxes and ``class score`` captions).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from visionatlas.training.protocol import PredictRequest
from visionatlas_detection.predictions import OVERLAYS, PREDICTIONS_FILE, class_colours, write_json

__all__ = ["LABEL_FOLDER", "draw_rotated_boxes", "write_oriented_predictions"]

LABEL_FOLDER = "labelTxt"


def draw_rotated_boxes(
    image: Any, polygons: Tensor, captions: Sequence[str], colours: Sequence[tuple[int, int, int]]
) -> Any:
    """A copy of the PIL ``image`` with each ``(4, 2)`` polygon outlined and captioned."""
    from PIL import ImageDraw

    drawn = image.copy()
    draw = ImageDraw.Draw(drawn)
    for polygon, caption, colour in zip(polygons.tolist(), captions, colours, strict=True):
        points = [(float(x), float(y)) for x, y in polygon]
        draw.line([*points, points[0]], fill=colour, width=2)
        left = min(x for x, _ in points)
        top = min(y for _, y in points)
        draw.text((left, max(top - 11, 0)), caption, fill=colour)
    return drawn


def _class_name(labels: Sequence[str], label: int) -> str:
    return labels[label] if 0 <= label < len(labels) else str(label)


def write_oriented_predictions(
    model: nn.Module, images: Sequence[Path], request: PredictRequest
) -> dict[str, Any]:
    """Predict on ``images`` and write the JSON, DOTA text files and overlays into
    ``request.out``; returns ``{"images", "detections", "files"}``."""
    from torchvision.transforms.v2 import functional as F

    from visionatlas.training.images import read_rgb

    out, labels = request.out, list(request.labels)
    for folder in (OVERLAYS, LABEL_FOLDER):
        (out / folder).mkdir(parents=True, exist_ok=True)
    model.eval().to(request.device)
    palette = class_colours(max(len(labels), 1) + 1)
    entries: list[dict[str, Any]] = []
    detections = 0
    for start in range(0, len(images), request.batch_size):
        batch = list(images[start : start + request.batch_size])
        pictures = [read_rgb(path) for path in batch]
        inputs = [F.pil_to_tensor(p).float().div(255).to(request.device) for p in pictures]
        with torch.inference_mode():
            outputs = model(inputs)
        for offset, (path, picture, output) in enumerate(
            zip(batch, pictures, outputs, strict=True)
        ):
            name = request.names[start + offset] if request.names else path.stem
            keep = output["scores"] >= request.score_threshold
            kept = {k: v[keep].cpu() for k, v in output.items() if isinstance(v, Tensor)}
            found = []
            lines = []
            for box, polygon, label, score in zip(
                kept["boxes"].tolist(), kept["polygons"].tolist(), kept["labels"].tolist(),
                kept["scores"].tolist(), strict=True,
            ):  # fmt: skip
                corners = [round(v, 2) for point in polygon for v in point]
                found.append({
                    "box": [round(v, 4) for v in box], "polygon": corners, "label": label,
                    "class": _class_name(labels, label), "score": round(score, 5),
                })  # fmt: skip
                lines.append(" ".join([*map(str, corners), _class_name(labels, label),
                                       f"{score:.5f}"]))  # fmt: skip
            detections += len(found)
            entries.append({
                "file_name": str(path), "width": picture.width, "height": picture.height,
                "overlay": f"{OVERLAYS}/{name}.png", "detections": found,
            })  # fmt: skip
            text = "\n".join(lines) + ("\n" if lines else "")
            (out / LABEL_FOLDER / f"{name}.txt").write_text(text, encoding="utf-8")
            captions = [f"{d['class']} {d['score']:.2f}" for d in found]
            colours = [palette[d["label"] % len(palette)] for d in found]
            overlay = draw_rotated_boxes(picture, kept["polygons"], captions, colours)
            overlay.save(out / OVERLAYS / f"{name}.png")
    write_json(out / PREDICTIONS_FILE, {"images": entries, "classes": labels[1:]})
    return {
        "images": len(entries),
        "detections": detections,
        "files": [PREDICTIONS_FILE, f"{LABEL_FOLDER}/", f"{OVERLAYS}/"],
    }
