"""Detection samples: images with boxes, labels and (for instance segmentation) masks.

Readers (:mod:`.coco`, :mod:`.voc`) turn annotation files into :class:`ImageRecord` lists;
:class:`DetectionDataset` reads one record at a time as torchvision's detectors take it:
a ``(3, H, W)`` float image in ``[0, 1]`` and a target dict with ``boxes`` (``(N, 4)``,
``x0, y0, x1, y1`` in pixels, as :class:`torchvision.tv_tensors.BoundingBoxes`), ``labels``
(``(N,)`` int64, 1-based: 0 is the background) and, with masks, ``masks`` (``(N, H, W)``
uint8 :class:`torchvision.tv_tensors.Mask`). Crowd and difficult objects are left out of
the targets, as COCO and VOC training do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

__all__ = ["Annotation", "Box", "DetectionDataset", "ImageRecord", "decode_mask"]

Box = tuple[float, float, float, float]
"""``x0, y0, x1, y1`` in pixels."""


@dataclass(frozen=True)
class Annotation:
    """One object: its box (``x0, y0, x1, y1`` pixels), 1-based label and mask source."""

    box: Box
    label: int
    annotation_id: int | str
    segmentation: Any = None
    """COCO polygons (a list of ``[x, y, ...]`` lists) or RLE (a dict), if any."""
    ignored: bool = False
    """Crowd (COCO) or difficult (VOC): kept for evaluation, left out of training targets."""


@dataclass(frozen=True)
class ImageRecord:
    """An image file, its size and its objects (none: a negative image)."""

    path: Path
    width: int
    height: int
    image_id: int
    annotations: tuple[Annotation, ...] = field(default=())


def decode_mask(segmentation: Any, height: int, width: int) -> torch.Tensor:
    """A ``(height, width)`` uint8 mask from COCO polygons or RLE (via pycocotools)."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        rles = mask_utils.frPyObjects(segmentation, height, width)
        rle = mask_utils.merge(rles)
    elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return torch.from_numpy(mask_utils.decode(rle)).to(torch.uint8)


class DetectionDataset(Dataset[tuple[torch.Tensor, dict[str, Any]]]):
    """Records read on access; ``transform(image, target)`` (torchvision v2) if given."""

    def __init__(
        self,
        records: Sequence[ImageRecord],
        labels: Sequence[str],
        *,
        masks: bool = False,
        transform: Callable[[Any, Any], tuple[Any, Any]] | None = None,
    ) -> None:
        self.records = list(records)
        self.labels = list(labels)
        self.masks = masks
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        from PIL import Image
        from torchvision import tv_tensors
        from torchvision.transforms.v2 import functional as F

        record = self.records[index]
        with Image.open(record.path) as file:
            image = F.to_dtype(F.pil_to_tensor(file.convert("RGB")), torch.float32, scale=True)
        kept = [a for a in record.annotations if not a.ignored]
        size = (record.height, record.width)
        boxes = torch.tensor([a.box for a in kept], dtype=torch.float32).reshape(-1, 4)
        target: dict[str, Any] = {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=size),
            "labels": torch.tensor([a.label for a in kept], dtype=torch.int64),
            "image_id": record.image_id,
        }
        if self.masks:
            unmasked = [a.annotation_id for a in kept if a.segmentation is None]
            if unmasked:
                raise ValueError(
                    f"{record.path}: annotations {unmasked[:5]} have no mask; read the file "
                    "with masks=True (instance segmentation needs a mask for every object)"
                )
            stacked = [decode_mask(a.segmentation, *size) for a in kept]
            masks = torch.stack(stacked) if stacked else torch.zeros((0, *size), dtype=torch.uint8)
            target["masks"] = tv_tensors.Mask(masks)
        if self.transform is not None:
            return self.transform(image, target)
        return image, target
