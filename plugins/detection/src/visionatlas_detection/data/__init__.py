"""Detection and instance-segmentation data: COCO and Pascal VOC readers, a synthetic set."""

from visionatlas.errors import DatasetError
from visionatlas_detection.data.coco import read_coco
from visionatlas_detection.data.samples import (
    Annotation,
    DetectionDataset,
    ImageRecord,
    decode_mask,
)
from visionatlas_detection.data.synthetic import write_synthetic_coco
from visionatlas_detection.data.voc import read_voc

__all__ = [
    "Annotation",
    "DatasetError",
    "DetectionDataset",
    "ImageRecord",
    "decode_mask",
    "read_coco",
    "read_voc",
    "write_synthetic_coco",
]
