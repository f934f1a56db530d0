"""The eval forward of an oriented detector as a graph ONNX and ``torch.export`` can take.

:class:`ExportableOrientedDetector` wraps a detector: it takes one ``(N, 3, H, W)`` batch in
[0, 1] and returns fixed-size outputs, ``boxes`` ``(N, D, 5)`` (le90, input pixels),
``scores`` ``(N, D)``, ``labels`` ``(N, D)`` and ``polygons`` ``(N, D, 4, 2)``, the
detections in decreasing score order, padded with score 0 and label 0 where an image has
fewer than ``D``. The non-maximum suppression is the greedy one of eager mode written
without data-dependent shapes: ``D`` rounds each take the best remaining candidate and drop
those of its class that overlap it, so the kept detections equal eager mode's.
The image size is fixed at export (the resize factor is computed from it).

>>> from visionatlas.lifecycle.export import export_onnx  # doctest: +SKIP
>>> export_onnx(ExportableOrientedDetector(model), "oriented.onnx", input_size=(256, 256),
...             check=True)  # doctest: +SKIP
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from visionatlas_oriented.boxes import boxes_to_corners, normalize_boxes
from visionatlas_oriented.detector import OrientedDetector
from visionatlas_oriented.iou import rotated_box_iou_aligned

__all__ = ["ExportableOrientedDetector", "greedy_nms_fixed"]


def greedy_nms_fixed(
    boxes: Tensor, scores: Tensor, labels: Tensor, *, iou_threshold: float, count: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Class-aware greedy NMS over ``(N, K)`` candidates (scores ``<= 0`` are not
    candidates), ``count`` rounds: ``(boxes (N, count, 5), scores, labels)``, padded."""
    remaining = scores.clone()
    kept_boxes, kept_scores, kept_labels = [], [], []
    for _ in range(count):
        best = remaining.argmax(dim=1, keepdim=True)  # (N, 1)
        score = torch.gather(remaining, 1, best)
        box = torch.gather(boxes, 1, best[..., None].expand(-1, -1, 5))
        label = torch.gather(labels, 1, best)
        found = score > 0
        kept_boxes.append(box * found[..., None])
        kept_scores.append(torch.where(found, score, torch.zeros_like(score)))
        kept_labels.append(torch.where(found, label, torch.zeros_like(label)))
        overlap = rotated_box_iou_aligned(
            box.expand_as(boxes).reshape(-1, 5), boxes.reshape(-1, 5)
        ).view_as(remaining)
        suppressed = ((overlap > iou_threshold) & (labels == label)) | (
            torch.arange(remaining.shape[1], device=remaining.device)[None] == best
        )
        remaining = torch.where(suppressed, torch.full_like(remaining, -1.0), remaining)
    return torch.cat(kept_boxes, 1), torch.cat(kept_scores, 1), torch.cat(kept_labels, 1)


class ExportableOrientedDetector(nn.Module):
    """``images (N, 3, H, W) -> {boxes, scores, labels, polygons}`` of fixed size ``D``."""

    def __init__(self, detector: OrientedDetector, *, detections: int | None = None) -> None:
        super().__init__()
        self.detector = detector
        self.detections = detections or detector.inference.detections_per_img

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        detector = self.detector
        transform = detector.transform
        height, width = int(images.shape[-2]), int(images.shape[-1])
        factor = transform.factor(height, width)
        size = (max(1, round(height * factor)), max(1, round(width * factor)))
        x = (images - transform.mean) / transform.std
        if size != (height, width):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        stride = transform.size_divisible
        x = F.pad(x, (0, -size[1] % stride, 0, -size[0] % stride))
        features = list(detector.backbone(x).values())
        shapes = [(int(f.shape[-2]), int(f.shape[-1])) for f in features]
        boxes, scores, labels = detector.candidates(detector.head(features), shapes)
        threshold = detector.inference.score_thresh
        scores = torch.where(scores > threshold, scores.float(), torch.zeros_like(scores))
        boxes = normalize_boxes(boxes.float())
        boxes, scores, labels = greedy_nms_fixed(
            boxes, scores, labels, iou_threshold=detector.inference.nms_thresh,
            count=min(self.detections, int(scores.shape[1])),
        )  # fmt: skip
        boxes = torch.cat([boxes[..., :4] / factor, boxes[..., 4:]], dim=-1)
        return {
            "boxes": boxes, "scores": scores, "labels": labels,
            "polygons": boxes_to_corners(boxes),
        }  # fmt: skip
