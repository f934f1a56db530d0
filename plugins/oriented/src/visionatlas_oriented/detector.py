"""The oriented detectors' shared contract: inputs, outputs, post-processing, freezing.

``forward(images, targets=None)``:

- training mode: ``targets`` (one dict per image: ``boxes`` float ``(K, 5)``
  ``(cx, cy, w, h, angle)`` in input pixels, le90 as :mod:`visionatlas_oriented.boxes`
  defines it, and ``labels`` int64 ``(K,)`` in ``[1, num_classes - 1]``) are required;
  returns a dict of losses;
- eval mode: one dict per image with ``boxes`` ``(D, 5)`` le90 in input pixels, ``labels``,
  ``scores`` and ``polygons`` ``(D, 4, 2)`` (the boxes' corners, for drawing).

Images are a list of float ``(3, H, W)`` tensors in [0, 1] or an ``(N, 3, H, W)`` tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from visionatlas_detection.inputs import DetectionInputError, as_image_list
from visionatlas_detection.models import freeze_stages
from visionatlas_oriented.boxes import boxes_problem, boxes_to_corners, normalize_boxes
from visionatlas_oriented.losses import LossSettings
from visionatlas_oriented.nms import batched_rotated_nms
from visionatlas_oriented.transform import Batch, OrientedTransform

__all__ = ["InferenceSettings", "OrientedDetector", "validate_oriented_targets"]

_BOXES = (
    "boxes are float (K, 5) tensors of (cx, cy, w, h, angle) in input pixels and radians, "
    "le90: w >= h > 0, angle in [-pi/2, pi/2) (visionatlas_oriented.boxes.normalize_boxes "
    "converts other forms)"
)


@dataclass(frozen=True)
class InferenceSettings:
    """What eval keeps: score threshold, NMS IoU, candidates per level, detections."""

    score_thresh: float = 0.05
    nms_thresh: float = 0.1
    candidates_per_level: int = 1000
    detections_per_img: int = 100


def validate_oriented_targets(images: Sequence[Tensor], targets: Any, num_classes: int) -> None:
    """Raise :class:`DetectionInputError` naming the image and box that break the contract."""
    rule = (
        f"labels are int64 (K,) tensors in [1, {num_classes - 1}] (num_classes={num_classes} "
        "counts the background, label 0)"
    )
    if not isinstance(targets, list | tuple) or len(targets) != len(images):
        raise DetectionInputError(
            f"targets must be a list with one dict per image ({len(images)} images), got "
            f"{type(targets).__name__}"
            + (f" of {len(targets)}" if isinstance(targets, list | tuple) else "")
        )
    for index, target in enumerate(targets):
        if not isinstance(target, dict) or not {"boxes", "labels"} <= set(target):
            raise DetectionInputError(
                f"targets[{index}] must be a dict with 'boxes' and 'labels'; {_BOXES}"
            )
        boxes, labels = target["boxes"], target["labels"]
        if not isinstance(boxes, Tensor) or not boxes.is_floating_point():
            raise DetectionInputError(f"targets[{index}]['boxes'] is not a float tensor; {_BOXES}")
        problem = boxes_problem(boxes.detach())
        if problem is not None:
            raise DetectionInputError(f"targets[{index}]['boxes']: {problem}; {_BOXES}")
        if not isinstance(labels, Tensor) or labels.dtype != torch.int64 or labels.dim() != 1:
            raise DetectionInputError(
                f"targets[{index}]['labels'] is not an int64 (K,) tensor; {rule}"
            )
        if labels.shape[0] != boxes.shape[0]:
            raise DetectionInputError(
                f"targets[{index}] has {boxes.shape[0]} boxes but {labels.shape[0]} labels"
            )
        if labels.numel() and (int(labels.min()) < 1 or int(labels.max()) >= num_classes):
            raise DetectionInputError(
                f"targets[{index}]['labels'] holds {labels.tolist()}, outside [1, "
                f"{num_classes - 1}]; {rule}"
            )


class OrientedDetector(nn.Module):
    """Backbone + FPN, a dense head, and the family's targets and decoding (subclasses).

    ``num_classes`` counts the background (label 0); the head has ``num_classes - 1``
    class outputs. Subclasses implement :meth:`losses` and :meth:`candidates`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        transform: OrientedTransform,
        *,
        num_classes: int,
        strides: Sequence[int],
        loss_settings: LossSettings,
        inference: InferenceSettings,
        stages: Sequence[nn.Module],
    ) -> None:
        super().__init__()
        self.backbone, self.head, self.transform = backbone, head, transform
        self.num_classes = num_classes
        self.strides = tuple(strides)
        self.loss_settings, self.inference = loss_settings, inference
        self._backbone_stages = list(stages)

    # -- contract ----------------------------------------------------------------------------
    def forward(self, images: Any, targets: Any = None) -> Any:
        image_list = as_image_list(images)
        if targets is not None:
            validate_oriented_targets(image_list, targets, self.num_classes)
        elif self.training:
            raise DetectionInputError(
                "a forward in training mode computes losses and needs targets (one dict with "
                "'boxes' and 'labels' per image); call model.eval() for predictions"
            )
        batch, scaled = self.transform(image_list, targets)
        features = list(self.backbone(batch.images).values())
        if len(features) != len(self.strides):
            raise RuntimeError(
                f"the feature pyramid gave {len(features)} levels, expected {len(self.strides)}"
            )
        outputs = self.head(features)
        shapes = [(int(f.shape[-2]), int(f.shape[-1])) for f in features]
        if self.training:
            assert scaled is not None
            return self.losses(outputs, shapes, scaled, batch)
        return self._detections(outputs, shapes, batch)

    def losses(
        self, outputs: Any, shapes: list[tuple[int, int]], targets: list[dict[str, Any]],
        batch: Batch,
    ) -> dict[str, Tensor]:  # fmt: skip
        raise NotImplementedError

    def candidates(
        self, outputs: Any, shapes: list[tuple[int, int]]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(boxes (N, C, 5), scores (N, C), labels (N, C))``: every image's top
        ``candidates_per_level`` per level, before the score threshold and NMS (boxes in
        the resized images' pixels, angles not wrapped)."""
        raise NotImplementedError

    def points(self, shapes: list[tuple[int, int]], device: torch.device) -> list[Tensor]:
        """Centres ``(HW, 2)`` of every level's locations, in input pixels, row-major."""
        centres = []
        for (height, width), stride in zip(shapes, self.strides, strict=True):
            ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) * stride
            xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) * stride
            grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
            centres.append(torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1))
        return centres

    def _detections(
        self, outputs: Any, shapes: list[tuple[int, int]], batch: Batch
    ) -> list[dict[str, Tensor]]:
        all_boxes, all_scores, all_labels = self.candidates(outputs, shapes)
        results = []
        for image, factor in enumerate(batch.factors):
            valid = all_scores[image] > self.inference.score_thresh
            boxes = normalize_boxes(all_boxes[image][valid].float())
            scores, labels = all_scores[image][valid].float(), all_labels[image][valid]
            keep = batched_rotated_nms(boxes, scores, labels, self.inference.nms_thresh)
            keep = keep[: self.inference.detections_per_img]
            boxes = boxes[keep]
            boxes[:, :4] = boxes[:, :4] / factor
            results.append({
                "boxes": boxes, "scores": scores[keep], "labels": labels[keep],
                "polygons": boxes_to_corners(boxes),
            })  # fmt: skip
        return results

    def top_per_level(self, scores: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(scores, location, label)`` ``(N, k)`` of one level's best ``(N, L, C)`` scores,
        ``k = min(candidates_per_level, L * C)`` (labels start at 1: the background has no
        output)."""
        flat = scores.flatten(1)
        k = min(self.inference.candidates_per_level, flat.shape[1])
        top, index = flat.topk(k, dim=1)
        classes = scores.shape[2]
        return top, index // classes, index % classes + 1

    # -- backbone freezing ---------------------------------------------------------------------
    def backbone_stages(self) -> list[nn.Module]:
        """The backbone's parameter groups, stem first."""
        return list(self._backbone_stages)

    def freeze_backbone(self, trainable_layers: int = 0) -> None:
        """Freeze the backbone except its last ``trainable_layers`` stages (FPN and head
        stay trainable)."""
        freeze_stages(self._backbone_stages, trainable_layers)

    def unfreeze_backbone(self) -> None:
        """Make every backbone parameter trainable."""
        for stage in self._backbone_stages:
            stage.requires_grad_(True)
