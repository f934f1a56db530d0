"""The training pieces of object detection (a :class:`~visionatlas.TaskTraining`).

Data (``source``): a folder with ``train/`` and ``val/`` (or ``test/``) splits, each a COCO
``annotations.json`` beside an ``images/`` folder; a Pascal VOC folder (``Annotations/``
and ``JPEGImages/``, split by ``val_fraction`` unless ``ImageSets/Main/{train,val}.txt``
exist); or ``builtin:shapes``, a synthetic COCO set written on first use. Items are
``(image, target)`` as :class:`~visionatlas_detection.data.DetectionDataset` gives them;
batches are lists. The detectors compute their own losses (``takes_targets``); metrics are
COCO mAP (:class:`~visionatlas_detection.metrics.DetectionMeanAP`). The labels kept with
the model are ``["__background__", *class names]``: label ``i`` is ``labels[i]``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from visionatlas.training.images import builtin_name
from visionatlas.training.protocol import DataRequest, LossOptions, PredictRequest, TrainingData

if TYPE_CHECKING:
    from torch import Tensor, nn
    from torchmetrics import MetricCollection

    from visionatlas_detection.data import ImageRecord

__all__ = ["BACKGROUND", "DetectionTraining", "read_detection_source"]

BACKGROUND = "__background__"
SHAPES = "shapes"
_SHAPES_DESCRIPTION = (
    "synthetic rectangles, ellipses and triangles on textured backgrounds, 128-256 px, "
    "COCO layout (160 train, 40 val images)"
)


def _coco_split(
    folder: Path, masks: bool, labels: Sequence[str]
) -> tuple[list[ImageRecord], list[str]]:
    from visionatlas_detection.data import read_coco

    return read_coco(folder / "annotations.json", folder / "images", masks=masks, labels=labels)


def read_detection_source(
    source: Path, request: DataRequest, *, masks: bool = False
) -> tuple[list[ImageRecord], list[ImageRecord], list[str]]:
    """``(train, val, class names)`` of a COCO split folder or a VOC folder."""
    from visionatlas_detection.data import DatasetError, read_voc

    known = [label for label in request.labels if label != BACKGROUND]
    held_out = next((source / s for s in ("val", "test") if (source / s).is_dir()), None)
    if (source / "train" / "annotations.json").is_file() or (
        held_out is not None and (held_out / "annotations.json").is_file()
    ):
        if request.purpose == "evaluate":
            folder = held_out or source / "train"
            records, names = _coco_split(folder, masks, known)
            return [], records, names
        train, names = _coco_split(source / "train", masks, known)
        if held_out is not None:
            val, _ = _coco_split(held_out, masks, names)
            return train, val, names
        return (*_split(train, request), names)
    if (source / "Annotations").is_dir():
        if masks:
            raise DatasetError(f"{source} is a Pascal VOC detection folder: it has no masks")
        main = source / "ImageSets" / "Main"
        if (main / "train.txt").is_file() and (main / "val.txt").is_file():
            train, names = read_voc(source, split="train", labels=known)
            val, _ = read_voc(source, split="val", labels=names)
        else:
            records, names = read_voc(source, labels=known)
            train, val = _split(records, request)
        return ([] if request.purpose == "evaluate" else train), val, names
    raise DatasetError(
        f"{source} is not detection data: expected train/ and val/ folders each holding "
        "annotations.json (COCO) and images/, or a Pascal VOC folder (Annotations/, "
        "JPEGImages/), or builtin:shapes"
    )


def _split(
    records: list[ImageRecord], request: DataRequest
) -> tuple[list[ImageRecord], list[ImageRecord]]:
    from visionatlas.training.images import stratified_split

    train, val = stratified_split([0] * len(records), request.val_fraction, request.seed)
    return [records[i] for i in train], [records[i] for i in val]


def _shapes_folder(cache_dir: Path | None) -> Path:
    """``builtin:shapes``, written once (atomically) into the built-in datasets folder."""
    from visionatlas.training.images import dataset_cache_dir, written_atomically
    from visionatlas_detection.data import write_synthetic_coco

    def complete(folder: Path) -> bool:
        return all((folder / s / "annotations.json").is_file() for s in ("train", "val"))

    def write(folder: Path) -> None:
        write_synthetic_coco(folder)

    target = dataset_cache_dir(cache_dir) / f"detection-{SHAPES}-v1"
    return written_atomically(target, write, complete=complete)


class DetectionTraining:
    """:class:`~visionatlas.training.protocol.TaskTraining` of ``object_detection``."""

    task = "object_detection"
    monitor = "val/map"
    monitor_mode: Literal["min", "max"] = "max"
    takes_targets = True
    masks = False
    builtin_datasets: Mapping[str, str] = MappingProxyType({SHAPES: _SHAPES_DESCRIPTION})

    def prepare_data(self, source: str, request: DataRequest) -> TrainingData:
        from visionatlas_detection.augment import detection_augmentation
        from visionatlas_detection.data import DetectionDataset

        builtin = builtin_name(source, self.builtin_datasets, self.task)
        folder = Path(source) if builtin is None else _shapes_folder(request.cache_dir)
        train, val, names = read_detection_source(folder, request, masks=self.masks)
        transform = detection_augmentation(request.augment)
        labels = [BACKGROUND, *names]
        return TrainingData(
            train=(
                DetectionDataset(train, labels, masks=self.masks, transform=transform)
                if request.purpose == "fit"
                else None
            ),
            val=DetectionDataset(val, labels, masks=self.masks),
            num_outputs=len(labels),
            labels=labels,
            source=source,
            description=f"{source}: {len(train)} training and {len(val)} held-out images, "
            f"{len(names)} classes",
        )

    def collate(self, items: Sequence[Any]) -> tuple[list[Tensor], list[dict[str, Any]]]:
        """``(images, targets)``: lists, as torchvision's detectors take them."""
        if not items:
            raise ValueError("cannot collate an empty batch")
        return [item[0] for item in items], [item[1] for item in items]

    def batch_transform(
        self, *, mixup: float, cutmix: float, num_outputs: int
    ) -> Callable[[Any, Any], tuple[Any, Any]] | None:
        if mixup or cutmix:
            raise ValueError(
                f"{self.task} does not use mixup or cutmix (they blend images, not boxes); "
                "set both to 0"
            )
        return None

    def loss(self, outputs: Any, targets: Any, options: LossOptions) -> Tensor:
        """The sum of the detector's losses."""
        if options.label_smoothing:
            raise ValueError(f"label_smoothing does not apply to {self.task}; set it to 0")
        if not isinstance(outputs, Mapping) or not outputs:
            raise ValueError(f"a {self.task} model in training mode returns a dict of losses")
        losses = list(outputs.values())
        total: Tensor = losses[0]
        for value in losses[1:]:
            total = total + value
        return total

    def write_predictions(
        self, model: nn.Module, images: Sequence[Path], request: PredictRequest
    ) -> dict[str, Any]:
        """``predictions.json`` (COCO, with scores) and PNG overlays (``visionatlas predict``)."""
        from visionatlas_detection.predictions import write_detections

        return write_detections(model, images, request)

    def metrics(self, data: TrainingData) -> MetricCollection:
        """COCO ``map``, ``map_50``, ``map_75``, ``map_small/medium/large``, ``mar_*``."""
        from torchmetrics import MetricCollection

        from visionatlas_detection.metrics import DetectionMeanAP

        return MetricCollection({"coco": DetectionMeanAP(masks=self.masks)}, compute_groups=False)
