"""The training pieces of instance segmentation: detection's, with masks.

The same COCO folders (polygons or RLE masks; Pascal VOC has none) and ``builtin:shapes``
as object detection, targets with ``masks``, and COCO mAP of boxes (``bbox_*``) and
masks (``segm_*``); the best checkpoint is the one with the best mask mAP.
"""

from __future__ import annotations

from visionatlas_detection.training import DetectionTraining

__all__ = ["InstanceSegmentationTraining"]


class InstanceSegmentationTraining(DetectionTraining):
    """:class:`~visionatlas.training.protocol.TaskTraining` of ``instance_segmentation``."""

    task = "instance_segmentation"
    monitor = "val/segm_map"
    masks = True
