"""The model class every semantic-segmentation architecture returns, and its contract.

``model(images)`` returns logits ``(N, num_classes, H, W)`` at the input resolution, in
either mode. ``model(images, targets)`` with ``(N, H, W)`` int64 masks returns the losses
``{"loss", "loss_main"[, "loss_aux"]}``, in either mode (eval mode gives validation losses
without dropout and with frozen BatchNorm statistics). Submodules are named as in
torchvision (``backbone``, ``classifier``, ``aux_classifier``), so state dicts of the
torchvision-backed architectures are torchvision's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.models.segmentation.lraspp import LRASPPHead

from visionatlas_segmentation.losses import SegmentationLoss
from visionatlas_segmentation.targets import check_images, check_targets

__all__ = ["SegmentationModel", "group_modules"]


def group_modules(modules: Sequence[nn.Module]) -> nn.Module:
    """An unregistered container over existing modules (one backbone stage)."""
    return nn.ModuleList(modules)


def _upsample(logits: Tensor, size: Sequence[int]) -> Tensor:
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


def _class_layer_names(head: nn.Module) -> list[str]:
    """Names, inside ``head``, of the convolutions whose outputs are the classes."""
    if isinstance(head, LRASPPHead):
        return ["low_classifier", "high_classifier"]
    if isinstance(head, nn.Sequential) and isinstance(head[-1], nn.Conv2d):
        return [str(len(head) - 1)]
    raise TypeError(f"cannot tell the class layers of a {type(head).__name__} head")


class SegmentationModel(nn.Module):
    """Backbone features -> head -> bilinear upsampling to the input size.

    ``backbone(images)`` (or :meth:`forward_features`) gives a dict of feature maps;
    ``classifier`` reads the map ``main_key`` (or the whole dict when ``main_key`` is None,
    as LR-ASPP does) and ``aux_classifier``, if any, the map ``aux_key``. The auxiliary head
    only runs when targets are given: it shapes training, not predictions.
    """

    aux_classifier: nn.Module | None

    def __init__(
        self,
        backbone: nn.Module,
        classifier: nn.Module,
        aux_classifier: nn.Module | None,
        *,
        criterion: SegmentationLoss,
        main_key: str | None,
        aux_key: str | None,
    ) -> None:
        super().__init__()
        if aux_classifier is not None and aux_key is None:
            raise ValueError("an auxiliary classifier needs the name of its feature map")
        self.backbone = backbone
        self.classifier = classifier
        self.aux_classifier = aux_classifier
        self.criterion = criterion
        self.main_key = main_key
        self.aux_key = aux_key

    @property
    def num_classes(self) -> int:
        return self.criterion.num_classes

    # -- computation ------------------------------------------------------------------------
    def forward_features(self, images: Tensor) -> dict[str, Tensor]:
        """The backbone's feature maps the heads read."""
        features: dict[str, Tensor] = self.backbone(images)
        return features

    def forward(self, images: Tensor, targets: Tensor | None = None) -> Tensor | dict[str, Tensor]:
        """Logits ``(N, num_classes, H, W)``; with ``targets``, the losses instead."""
        check_images(images)
        any_counted = True
        if targets is not None:
            any_counted = check_targets(
                images,
                targets,
                num_classes=self.num_classes,
                ignore_index=self.criterion.ignore_index,
            )
        size = images.shape[-2:]
        features = self.forward_features(images)
        main_input = features if self.main_key is None else features[self.main_key]
        logits = _upsample(self.classifier(main_input), size)
        if targets is None:
            return logits
        aux_logits = None
        if self.aux_classifier is not None and self.aux_key is not None:
            aux_logits = _upsample(self.aux_classifier(features[self.aux_key]), size)
        return self.criterion(logits, targets, aux_logits, any_counted=any_counted)

    # -- structure --------------------------------------------------------------------------
    def heads(self) -> Iterator[tuple[str, nn.Module]]:
        """``("classifier", module)`` and, when present, ``("aux_classifier", module)``."""
        yield "classifier", self.classifier
        if self.aux_classifier is not None:
            yield "aux_classifier", self.aux_classifier

    def class_layers(self) -> list[str]:
        """Qualified names of the layers sized by ``num_classes`` (the heads' final convs)."""
        return [
            f"{prefix}.{name}" for prefix, head in self.heads() for name in _class_layer_names(head)
        ]

    def set_head_dropout(self, rate: float) -> int:
        """Set the rate of every dropout layer in the heads; return how many there are."""
        layers = [
            m for _, head in self.heads() for m in head.modules() if isinstance(m, nn.Dropout)
        ]
        for layer in layers:
            layer.p = rate
        return len(layers)

    # -- freezing ---------------------------------------------------------------------------
    def backbone_stages(self) -> list[nn.Module]:
        """Ordered backbone stages: the stem, then one group per feature level."""
        raise NotImplementedError

    def freeze_backbone(self, trainable_stages: int = 0) -> None:
        """Freeze the backbone except its last ``trainable_stages`` stages.

        Only ``requires_grad`` changes: BatchNorm statistics of frozen stages still update in
        training mode (call ``.eval()`` on those modules to fix them too).
        """
        groups = self.backbone_stages()
        if not 0 <= trainable_stages <= len(groups):
            raise ValueError(
                f"trainable_backbone_layers must be between 0 and {len(groups)} (the stem and "
                f"{len(groups) - 1} stages), got {trainable_stages}"
            )
        self.backbone.requires_grad_(False)
        for group in groups[len(groups) - trainable_stages :]:
            group.requires_grad_(True)

    def unfreeze_backbone(self) -> None:
        self.backbone.requires_grad_(True)
