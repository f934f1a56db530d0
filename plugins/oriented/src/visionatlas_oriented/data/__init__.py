"""Oriented detection data: a DOTA reader, samples for training and a synthetic set."""

from visionatlas.errors import DatasetError
from visionatlas_oriented.data.dota import POINT_SLACK, read_dota
from visionatlas_oriented.data.samples import OrientedDataset, OrientedRecord
from visionatlas_oriented.data.synthetic import write_synthetic_dota

__all__ = [
    "POINT_SLACK",
    "DatasetError",
    "OrientedDataset",
    "OrientedRecord",
    "read_dota",
    "write_synthetic_dota",
]
