"""Semantic-segmentation data: mask folders (plain, Pascal VOC, Cityscapes), a synthetic set."""

from visionatlas.errors import DatasetError
from visionatlas_segmentation.data.folders import (
    CITYSCAPES_CLASSES,
    IGNORE_INDEX,
    VOC_CLASS_NAMES,
    MaskPair,
    read_classes,
    read_mask_folders,
)
from visionatlas_segmentation.data.samples import SegmentationDataset, read_mask
from visionatlas_segmentation.data.synthetic import write_synthetic_masks

__all__ = [
    "CITYSCAPES_CLASSES",
    "IGNORE_INDEX",
    "VOC_CLASS_NAMES",
    "DatasetError",
    "MaskPair",
    "SegmentationDataset",
    "read_classes",
    "read_mask",
    "read_mask_folders",
    "write_synthetic_masks",
]
