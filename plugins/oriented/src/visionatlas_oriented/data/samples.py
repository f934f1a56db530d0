"""Oriented detection samples: images with 4-point polygons, class names and difficulty.

Readers (:mod:`.dota`) turn label files into :class:`OrientedRecord` lists;
:class:`OrientedDataset` reads one record at a time as the oriented detectors take it: a
``(3, H, W)`` float image in ``[0, 1]`` and a target dict with ``boxes`` (``(K, 5)``
float32 ``cx, cy, w, h, angle``, le90: the min-area rectangle of each polygon), ``labels``
(``(K,)`` int64, label ``i`` is ``labels[i]``, 0 the background), ``difficult`` (``(K,)``
bool), ``polygons`` (``(K, 4, 2)`` float32, the corners as read) and ``image_id``.
Difficult objects stay in the targets: training and evaluation decide what to do with them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from visionatlas.errors import DatasetError
from visionatlas_detection.training import BACKGROUND

__all__ = ["OrientedDataset", "OrientedRecord", "Sample", "SampleTransform"]

Sample = tuple[torch.Tensor, dict[str, Any]]
SampleTransform = Callable[[torch.Tensor, dict[str, Any]], Sample]
"""``transform(image, target) -> (image, target)``."""


@dataclass(frozen=True, eq=False)
class OrientedRecord:
    """An image file, its size and its objects (none: a negative image).

    ``corners`` is ``(K, 4, 2)`` float32 (``x, y`` pixels, x right, y down), ``classes``
    the class name of each object and ``difficult`` ``(K,)`` bool. The arrays are
    read-only; records compare by identity.
    """

    image: Path
    width: int
    height: int
    corners: np.ndarray
    classes: tuple[str, ...]
    difficult: np.ndarray

    def __post_init__(self) -> None:
        count = len(self.classes)
        if self.corners.shape != (count, 4, 2) or self.difficult.shape != (count,):
            raise ValueError(
                f"{self.image}: {count} classes need corners of shape ({count}, 4, 2) and "
                f"difficult of shape ({count},), got {self.corners.shape} and "
                f"{self.difficult.shape}"
            )
        corners = np.array(self.corners, dtype=np.float32)
        difficult = np.array(self.difficult, dtype=bool)
        corners.setflags(write=False)
        difficult.setflags(write=False)
        object.__setattr__(self, "corners", corners)
        object.__setattr__(self, "difficult", difficult)


class OrientedDataset(Dataset[Sample]):
    """Records read on access; ``transform(image, target)`` (training augmentation) if given.

    ``labels`` is the class list kept with the model, ``["__background__", *class names]``;
    every class name of the records must be in it.
    """

    def __init__(
        self,
        records: Sequence[OrientedRecord],
        labels: Sequence[str],
        transform: SampleTransform | None = None,
    ) -> None:
        self.records = list(records)
        self.labels = list(labels)
        self.transform = transform
        if not self.labels or self.labels[0] != BACKGROUND:
            raise ValueError(
                f"labels {self.labels[:4]} must start with {BACKGROUND!r}: they are the class "
                f"list kept with the model, [{BACKGROUND!r}, *class names]"
            )
        self._index = {name: i for i, name in enumerate(self.labels) if i > 0}
        for record in self.records:
            unknown = sorted(set(record.classes) - set(self._index))
            if unknown:
                raise DatasetError(
                    f"{record.image} has classes {unknown} that are not among the labels "
                    f"{self.labels[1:]}",
                    path=record.image,
                )

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        from torchvision.transforms.v2 import functional as F

        from visionatlas.training.images import read_rgb
        from visionatlas_oriented.boxes import corners_to_boxes

        record = self.records[index]
        image = F.to_dtype(F.pil_to_tensor(read_rgb(record.image)), torch.float32, scale=True)
        polygons = torch.from_numpy(record.corners.copy())
        target: dict[str, Any] = {
            "boxes": corners_to_boxes(polygons).to(torch.float32).reshape(-1, 5),
            "labels": torch.tensor([self._index[c] for c in record.classes], dtype=torch.int64),
            "difficult": torch.from_numpy(record.difficult.copy()),
            "polygons": polygons,
            "image_id": index,
        }
        if self.transform is not None:
            return self.transform(image, target)
        return image, target
