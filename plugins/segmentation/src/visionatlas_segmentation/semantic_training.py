"""The training pieces of semantic segmentation (a :class:`~visionatlas.TaskTraining`).

Data (``source``): a mask-folder, Pascal VOC or Cityscapes folder
(:func:`~visionatlas_segmentation.data.read_mask_folders`), or ``builtin:shapes``, a
synthetic mask-folder set written on first use. Samples have the run's ``input_size``.
The models compute their own loss from their config (cross-entropy ignoring
``ignore_index``, class weights, label smoothing, the auxiliary head:
``takes_targets``); metrics are mean IoU, pixel accuracy and per-class IoU
(:func:`~visionatlas_segmentation.metrics.semantic_metrics`).
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

    from visionatlas_segmentation.data import MaskPair

__all__ = ["SemanticSegmentationTraining"]

SHAPES = "shapes"
_SHAPES_DESCRIPTION = (
    "synthetic rectangles, ellipses and triangles on textured backgrounds, 128-256 px, "
    "mask folders with ignored borders (480 train, 40 val images)"
)


def _shapes_folder(cache_dir: Path | None) -> Path:
    from visionatlas.training.images import dataset_cache_dir, written_atomically
    from visionatlas_segmentation.data import write_synthetic_masks

    def complete(folder: Path) -> bool:
        return (folder / "classes.txt").is_file()

    def write(folder: Path) -> None:
        write_synthetic_masks(folder)

    target = dataset_cache_dir(cache_dir) / f"segmentation-{SHAPES}-v2"
    return written_atomically(target, write, complete=complete)


def _split(pairs: list[MaskPair], request: DataRequest) -> tuple[list[MaskPair], list[MaskPair]]:
    from visionatlas.training.images import stratified_split

    train, val = stratified_split([0] * len(pairs), request.val_fraction, request.seed)
    return [pairs[i] for i in train], [pairs[i] for i in val]


class SemanticSegmentationTraining:
    """:class:`~visionatlas.training.protocol.TaskTraining` of ``segmentation``."""

    task = "segmentation"
    monitor = "val/miou"
    monitor_mode: Literal["min", "max"] = "max"
    takes_targets = True
    builtin_datasets: Mapping[str, str] = MappingProxyType({SHAPES: _SHAPES_DESCRIPTION})

    def prepare_data(self, source: str, request: DataRequest) -> TrainingData:
        from visionatlas_segmentation.data import SegmentationDataset, read_mask_folders

        builtin = builtin_name(source, self.builtin_datasets, self.task)
        folder = Path(source) if builtin is None else _shapes_folder(request.cache_dir)
        train, val, names = read_mask_folders(folder, request.labels)
        if request.purpose == "evaluate":
            train, val = [], val if val is not None else train
        elif val is None:
            train, val = _split(train, request)
        size = request.input_size
        return TrainingData(
            train=(
                SegmentationDataset(train, len(names), size, train=True, augment=request.augment)
                if request.purpose == "fit"
                else None
            ),
            val=SegmentationDataset(val, len(names), size),
            num_outputs=len(names),
            labels=names,
            source=source,
            description=f"{source}: {len(train)} training and {len(val)} held-out images, "
            f"{len(names)} classes",
        )

    def collate(self, items: Sequence[Any]) -> tuple[Tensor, Tensor]:
        """``(images (N, 3, H, W), masks (N, H, W))``."""
        import torch

        if not items:
            raise ValueError("cannot collate an empty batch")
        return torch.stack([i[0] for i in items]), torch.stack([i[1] for i in items])

    def batch_transform(
        self, *, mixup: float, cutmix: float, num_outputs: int
    ) -> Callable[[Any, Any], tuple[Any, Any]] | None:
        if mixup or cutmix:
            raise ValueError(
                f"{self.task} does not use mixup or cutmix (they blend images, not masks); "
                "set both to 0"
            )
        return None

    def loss(self, outputs: Any, targets: Any, options: LossOptions) -> Tensor:
        """The model's ``loss`` (main cross-entropy plus the weighted auxiliary term)."""
        if options.label_smoothing:
            raise ValueError(
                "label_smoothing of the training config does not apply to segmentation; "
                "set the model's own (model.label_smoothing) instead"
            )
        if not isinstance(outputs, Mapping) or "loss" not in outputs:
            raise ValueError(f"a {self.task} model given targets returns a dict with 'loss'")
        loss: Tensor = outputs["loss"]
        return loss

    def metrics(self, data: TrainingData) -> MetricCollection:
        from visionatlas_segmentation.metrics import semantic_metrics

        return semantic_metrics(data.labels)

    def write_predictions(
        self, model: nn.Module, images: Sequence[Path], request: PredictRequest
    ) -> dict[str, Any]:
        """Mask PNGs, overlays and ``predictions.json`` (``visionatlas predict``)."""
        from visionatlas_segmentation.predictions import write_masks

        return write_masks(model, images, request)
