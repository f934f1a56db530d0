"""The training pieces of oriented detection (a :class:`~visionatlas.TaskTraining`).

Data (``source``): a DOTA folder (``images/`` and ``labelTxt/``) or one with ``train/`` and
``val/`` (or ``test/``) DOTA splits, a plain folder being split by ``val_fraction``; or
``builtin:shapes``, a synthetic DOTA set written on first use. Items are ``(image, target)``
as :class:`~visionatlas_oriented.data.OrientedDataset` gives them; batches are lists. The
detectors compute their own losses (``takes_targets``); the metric is rotated mAP@0.5 as
DOTA's evaluation defines it. The labels kept with the model are
``["__background__", *class names]``: label ``i`` is ``labels[i]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from visionatlas.training.images import builtin_name
from visionatlas.training.protocol import DataRequest, PredictRequest, TrainingData
from visionatlas_detection.training import BACKGROUND, DetectionTraining

if TYPE_CHECKING:
    from torch import nn
    from torchmetrics import MetricCollection

    from visionatlas_oriented.data import OrientedRecord

__all__ = ["BACKGROUND", "OrientedTraining", "read_oriented_source"]

SHAPES = "shapes"
_SHAPES_DESCRIPTION = (
    "synthetic elongated shapes at every angle and many scales on textured backgrounds, "
    "128-256 px, DOTA layout (train/ and val/ with images/ and labelTxt/)"
)


def _is_dota(folder: Path) -> bool:
    return (folder / "labelTxt").is_dir() and (folder / "images").is_dir()


def read_oriented_source(
    source: Path, request: DataRequest
) -> tuple[list[OrientedRecord], list[OrientedRecord], list[str]]:
    """``(train, val, class names)`` of a DOTA folder or a folder of DOTA splits."""
    from visionatlas.errors import DatasetError
    from visionatlas_oriented.data import read_dota

    known = [label for label in request.labels if label != BACKGROUND]
    held_out = next((source / s for s in ("val", "test") if _is_dota(source / s)), None)
    if _is_dota(source / "train") or held_out is not None:
        if request.purpose == "evaluate":
            records, names = read_dota(held_out or source / "train", labels=known)
            return [], records, names
        train, names = read_dota(source / "train", labels=known)
        if held_out is not None:
            val, _ = read_dota(held_out, labels=names)
            return train, val, names
        return (*_split(train, request), names)
    if _is_dota(source):
        records, names = read_dota(source, labels=known)
        if request.purpose == "evaluate":
            return [], records, names
        return (*_split(records, request), names)
    raise DatasetError(
        f"{source} is not oriented-detection data: expected a DOTA folder (images/ and "
        "labelTxt/ with one 'x1 y1 ... x4 y4 class difficult' line per object), train/ and "
        "val/ folders each laid out so, or builtin:shapes"
    )


def _split(
    records: list[OrientedRecord], request: DataRequest
) -> tuple[list[OrientedRecord], list[OrientedRecord]]:
    from visionatlas.training.images import stratified_split

    train, val = stratified_split([0] * len(records), request.val_fraction, request.seed)
    return [records[i] for i in train], [records[i] for i in val]


def _shapes_folder(cache_dir: Path | None) -> Path:
    """``builtin:shapes``, written once (atomically) into the built-in datasets folder."""
    from visionatlas.training.images import dataset_cache_dir, written_atomically
    from visionatlas_oriented.data import write_synthetic_dota

    def complete(folder: Path) -> bool:
        return all(_is_dota(folder / s) for s in ("train", "val"))

    def write(folder: Path) -> None:
        write_synthetic_dota(folder)

    target = dataset_cache_dir(cache_dir) / f"oriented-{SHAPES}-v1"
    return written_atomically(target, write, complete=complete)


class OrientedTraining(DetectionTraining):
    """:class:`~visionatlas.training.protocol.TaskTraining` of ``oriented_object_detection``
    (batches, losses and the refusal of mixup are object detection's)."""

    task = "oriented_object_detection"
    monitor = "val/map_50"
    monitor_mode: Literal["min", "max"] = "max"
    takes_targets = True
    builtin_datasets: Mapping[str, str] = MappingProxyType({SHAPES: _SHAPES_DESCRIPTION})

    def prepare_data(self, source: str, request: DataRequest) -> TrainingData:
        from visionatlas_oriented.augment import oriented_augmentation
        from visionatlas_oriented.data import OrientedDataset

        builtin = builtin_name(source, self.builtin_datasets, self.task)
        folder = Path(source) if builtin is None else _shapes_folder(request.cache_dir)
        train, val, names = read_oriented_source(folder, request)
        labels = [BACKGROUND, *names]
        return TrainingData(
            train=(
                OrientedDataset(train, labels, transform=oriented_augmentation(request.augment))
                if request.purpose == "fit"
                else None
            ),
            val=OrientedDataset(val, labels),
            num_outputs=len(labels),
            labels=labels,
            source=source,
            description=f"{source}: {len(train)} training and {len(val)} held-out images, "
            f"{len(names)} classes",
        )

    def write_predictions(
        self, model: nn.Module, images: Sequence[Path], request: PredictRequest
    ) -> dict[str, Any]:
        """DOTA ``labelTxt`` files with scores, ``predictions.json`` and PNG overlays."""
        from visionatlas_oriented.predictions import write_oriented_predictions

        return write_oriented_predictions(model, images, request)

    def metrics(self, data: TrainingData) -> MetricCollection:
        """``map_50`` (DOTA's rotated mAP@0.5) and ``ap_50_<class>`` per class."""
        from torchmetrics import MetricCollection

        from visionatlas_oriented.metrics import RotatedMeanAP

        names = [label for label in data.labels if label != BACKGROUND]
        return MetricCollection({"dota": RotatedMeanAP(names)}, compute_groups=False)
