"""torchvision's detectors with the visionatlas contract on top.

Each class subclasses the torchvision detector, so its layers, state-dict keys, outputs and
losses are torchvision's; :class:`Detector` adds input checks (see :mod:`.inputs`), backbone
freezing by stages, and :meth:`Detector.reset_classes` for fine-tuning on a new label set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from torch import Tensor, nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.ssd import SSD

from visionatlas_detection.inputs import DetectionInputError, as_image_list, validate_targets

__all__ = [
    "Detector",
    "FCOSDetector",
    "FasterRCNNDetector",
    "RetinaNetDetector",
    "SSDDetector",
    "attach",
    "freeze_stages",
    "reset_box_predictor",
]

_PRIOR_PROBABILITY = 0.01  # torchvision's initial foreground probability of focal-loss heads


def _like(module: nn.Module, reference: Tensor) -> nn.Module:
    if reference.is_meta:  # a placeholder of deferred_init: the new layer stays real
        return module.to(dtype=reference.dtype)
    return module.to(device=reference.device, dtype=reference.dtype)


class Detector(nn.Module):
    """Mixin placed before a torchvision detector class (``class X(Detector, FCOS)``).

    ``num_classes`` counts the background (label 0). ``forward(images, targets=None)``:

    - training mode: ``targets`` are required; returns a dict of losses;
    - eval mode: returns one dict per image with ``boxes`` (``(K, 4)`` xyxy in input
      pixels), ``labels`` and ``scores`` (and ``masks`` for Mask R-CNN).
    """

    requires_masks: ClassVar[bool] = False
    num_classes: int
    _backbone_stages: list[nn.Module]
    # torchvision's submodules (typed loosely: torchvision ships no annotations)
    backbone: Any
    head: Any
    roi_heads: Any
    anchor_generator: Any

    def forward(self, images: Any, targets: Any = None) -> Any:
        image_list = as_image_list(images)
        if targets is not None:
            validate_targets(
                image_list, targets, num_classes=self.num_classes, masks=self.requires_masks
            )
        elif self.training:
            raise DetectionInputError(
                "a forward in training mode computes losses and needs targets (one dict "
                "with 'boxes' and 'labels' per image); call model.eval() for predictions"
            )
        return super().forward(image_list, targets)

    # -- backbone freezing -----------------------------------------------------------------
    def backbone_stages(self) -> list[nn.Module]:
        """The backbone's parameter groups, stem first (what trainable layers count)."""
        return list(self._backbone_stages)

    def freeze_backbone(self, trainable_layers: int = 0) -> None:
        """Freeze the backbone except its last ``trainable_layers`` stages.

        torchvision's ``trainable_backbone_layers``: 0 freezes it all, the number of stages
        (5 for ResNet, 6 for SSDLite's MobileNetV3) trains it all. The FPN and the heads are
        not touched.
        """
        freeze_stages(self._backbone_stages, trainable_layers)

    def unfreeze_backbone(self) -> None:
        """Make every backbone parameter trainable."""
        for stage in self._backbone_stages:
            stage.requires_grad_(True)

    # -- class-dependent layers -------------------------------------------------------------
    def class_layers(self) -> list[tuple[str, int]]:
        """``(module name, outputs per class)`` of every layer whose size depends on
        ``num_classes``; a checkpoint's class count is read from the first."""
        raise NotImplementedError

    def checkpoint_num_classes(self, state: Mapping[str, Tensor]) -> int | None:
        """The ``num_classes`` a state dict was trained with, or ``None`` if it has no
        class layer of this model."""
        name, per_class = self.class_layers()[0]
        weight = state.get(f"{name}.weight")
        if weight is None or weight.dim() == 0 or weight.shape[0] % per_class:
            return None
        return int(weight.shape[0]) // per_class

    def reset_classes(self, num_classes: int) -> None:
        """Replace the class-dependent layers with freshly initialised ones for
        ``num_classes`` (background included), keeping every other weight."""
        raise NotImplementedError


def freeze_stages(stages: Sequence[nn.Module], trainable_layers: int) -> None:
    """Freeze ``stages`` (stem first) except the last ``trainable_layers`` of them."""
    if not 0 <= trainable_layers <= len(stages):
        raise ValueError(
            f"trainable_layers must be between 0 and {len(stages)} (the backbone's "
            f"stages), got {trainable_layers}"
        )
    for stage in stages:
        stage.requires_grad_(False)
    for stage in stages[len(stages) - trainable_layers :]:
        stage.requires_grad_(True)


DetectorT = TypeVar("DetectorT", bound=Detector)


def attach(model: DetectorT, *, num_classes: int, stages: Sequence[nn.Module]) -> DetectorT:
    """Record what :class:`Detector` needs: ``num_classes`` and the backbone's stages."""
    model.num_classes = num_classes
    model._backbone_stages = list(stages)
    return model


def reset_box_predictor(model: Any, num_classes: int) -> None:
    """A new ``FastRCNNPredictor`` (class scores and per-class box deltas) for R-CNN models."""
    old = model.roi_heads.box_predictor
    new = FastRCNNPredictor(old.cls_score.in_features, num_classes)
    model.roi_heads.box_predictor = _like(new, old.cls_score.weight)


class FasterRCNNDetector(Detector, FasterRCNN):  # type: ignore[misc]
    """torchvision's ``FasterRCNN`` with the visionatlas contract."""

    def class_layers(self) -> list[tuple[str, int]]:
        return [("roi_heads.box_predictor.cls_score", 1), ("roi_heads.box_predictor.bbox_pred", 4)]

    def reset_classes(self, num_classes: int) -> None:
        reset_box_predictor(self, num_classes)
        self.num_classes = num_classes


def _new_focal_logits(old: nn.Conv2d, outputs: int) -> nn.Module:
    """A classification conv initialised as torchvision's focal-loss heads do."""
    new = nn.Conv2d(old.in_channels, outputs, kernel_size=3, stride=1, padding=1)
    nn.init.normal_(new.weight, std=0.01)
    if new.bias is not None:
        nn.init.constant_(new.bias, -math.log((1 - _PRIOR_PROBABILITY) / _PRIOR_PROBABILITY))
    return _like(new, old.weight)


class _DenseHeadDetector(Detector):
    """Detectors whose classification head has a ``cls_logits`` conv (FCOS, RetinaNet)."""

    def class_layers(self) -> list[tuple[str, int]]:
        anchors = int(self.head.classification_head.num_anchors)
        return [("head.classification_head.cls_logits", anchors)]

    def reset_classes(self, num_classes: int) -> None:
        head = self.head.classification_head
        head.cls_logits = _new_focal_logits(head.cls_logits, head.num_anchors * num_classes)
        head.num_classes = num_classes
        self.num_classes = num_classes


class RetinaNetDetector(_DenseHeadDetector, RetinaNet):  # type: ignore[misc]
    """torchvision's ``RetinaNet`` with the visionatlas contract."""


class FCOSDetector(_DenseHeadDetector, FCOS):  # type: ignore[misc]
    """torchvision's ``FCOS`` with the visionatlas contract."""


class SSDDetector(Detector, SSD):  # type: ignore[misc]
    """torchvision's ``SSD`` (here SSDLite) with the visionatlas contract."""

    def _anchors_per_level(self) -> Sequence[int]:
        return [int(n) for n in self.anchor_generator.num_anchors_per_location()]

    def class_layers(self) -> list[tuple[str, int]]:
        return [
            (f"head.classification_head.module_list.{i}.1", anchors)
            for i, anchors in enumerate(self._anchors_per_level())
        ]

    def reset_classes(self, num_classes: int) -> None:
        head = self.head.classification_head
        for block, anchors in zip(head.module_list, self._anchors_per_level(), strict=True):
            old = block[-1]
            new = nn.Conv2d(old.in_channels, anchors * num_classes, kernel_size=1)
            nn.init.normal_(new.weight, mean=0.0, std=0.03)  # torchvision's SSDLite init
            if new.bias is not None:
                nn.init.zeros_(new.bias)
            block[-1] = _like(new, old.weight)
        head.num_columns = num_classes
        self.num_classes = num_classes
