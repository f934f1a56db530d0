"""Catalog entries of the ``segmentation`` task (imports no torch).

Two kinds of architectures:

- torchvision's six semantic-segmentation models, built with torchvision's own builders
  (:data:`TORCHVISION_ARCHITECTURES`), with COCO-with-VOC-labels weights;
- ``deeplabv3`` and ``fcn`` on any registered multi-scale backbone
  (:data:`GENERIC_ARCHITECTURES`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from visionatlas.plugins.registrar import Registrar
from visionatlas.specs import ArchitectureSpec, Hyperparameters, TaskSpec
from visionatlas_segmentation.params import deeplab_head_params, fcn_head_params

__all__ = [
    "DEFAULT_BACKBONE",
    "GENERIC_ARCHITECTURES",
    "TASK",
    "TORCHVISION_ARCHITECTURES",
    "VOC_CLASSES",
    "GenericArchitecture",
    "TorchvisionArchitecture",
    "register_semantic_architectures",
    "register_semantic_task",
]

TASK = "segmentation"
VOC_CLASSES = 21
"""Classes of the COCO-with-VOC-labels checkpoints: background and the 20 VOC categories."""
DEFAULT_BACKBONE = "resnet50"
"""Backbone of the generic architectures when the config names none."""

HeadKind = Literal["fcn", "deeplabv3", "lraspp"]

# torchvision's reference recipe trains with SGD (momentum 0.9, poly schedule) on 480x480
# crops for 30 epochs at a total batch of 32 (8 GPUs x 4). The defaults below keep its
# learning rate per image (linear scaling) at a batch that fits one 16 GB GPU.
_DILATED_RESNET = Hyperparameters(
    learning_rate=0.0025,
    batch_size=4,
    input_size=(480, 480),
    epochs=30,
    optimizer="sgd",
    weight_decay=1e-4,
)
_MOBILENET = Hyperparameters(
    learning_rate=0.005,
    batch_size=16,
    input_size=(480, 480),
    epochs=30,
    optimizer="sgd",
    weight_decay=1e-6,
)
_GENERIC = Hyperparameters(
    learning_rate=0.005,
    batch_size=8,
    input_size=(480, 480),
    epochs=30,
    optimizer="sgd",
    weight_decay=1e-4,
)


@dataclass(frozen=True, kw_only=True)
class TorchvisionArchitecture:
    """One of torchvision's semantic-segmentation models, as registered here."""

    name: str
    torchvision_builder: str
    """Builder in ``torchvision.models.segmentation``."""
    display_name: str
    note: str
    head: HeadKind
    backbone: str
    weights: str
    """The full COCO-with-VOC-labels checkpoint (a torchvision weights enum member)."""
    backbone_weights: str
    """ImageNet weights of the backbone: the default of the builder's ``weights_backbone``."""
    num_params: int
    """Parameters with 21 classes and the default config (auxiliary head included)."""
    hyperparameters: Hyperparameters

    @property
    def has_aux_head(self) -> bool:
        """FCN and DeepLabV3 have an auxiliary FCN head; LR-ASPP has none."""
        return self.head != "lraspp"


def _resnet(head: HeadKind, depth: int, num_params: int, miou: float) -> TorchvisionArchitecture:
    title = "FCN" if head == "fcn" else "DeepLabV3"
    head_note = "FCN head" if head == "fcn" else "ASPP head"
    return TorchvisionArchitecture(
        name=f"{head}_resnet{depth}",
        torchvision_builder=f"{head}_resnet{depth}",
        display_name=f"{title} (ResNet-{depth})",
        note=f"{head_note} on a dilated ResNet-{depth} (output stride 8); COCO-VOC mIoU {miou}",
        head=head,
        backbone=f"resnet{depth}",
        weights=f"{title}_ResNet{depth}_Weights.COCO_WITH_VOC_LABELS_V1",
        backbone_weights=f"ResNet{depth}_Weights.IMAGENET1K_V1",
        num_params=num_params,
        hyperparameters=_DILATED_RESNET,
    )


TORCHVISION_ARCHITECTURES: tuple[TorchvisionArchitecture, ...] = (
    _resnet("fcn", 50, 35_322_218, 60.5),
    _resnet("fcn", 101, 54_314_346, 63.7),
    _resnet("deeplabv3", 50, 42_004_074, 66.4),
    _resnet("deeplabv3", 101, 60_996_202, 67.4),
    TorchvisionArchitecture(
        name="deeplabv3_mobilenet",
        torchvision_builder="deeplabv3_mobilenet_v3_large",
        display_name="DeepLabV3 (MobileNetV3-Large)",
        note="ASPP head on a dilated MobileNetV3-Large (output stride 16); COCO-VOC mIoU 60.3",
        head="deeplabv3",
        backbone="mobilenet_v3_large",
        weights="DeepLabV3_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1",
        backbone_weights="MobileNet_V3_Large_Weights.IMAGENET1K_V1",
        num_params=11_029_328,
        hyperparameters=_MOBILENET,
    ),
    TorchvisionArchitecture(
        name="lraspp_mobilenet",
        torchvision_builder="lraspp_mobilenet_v3_large",
        display_name="LR-ASPP (MobileNetV3-Large)",
        note="Lite R-ASPP head on MobileNetV3-Large, for mobile; COCO-VOC mIoU 57.9",
        head="lraspp",
        backbone="mobilenet_v3_large",
        weights="LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1",
        backbone_weights="MobileNet_V3_Large_Weights.IMAGENET1K_V1",
        num_params=3_221_538,
        hyperparameters=_MOBILENET,
    ),
)


@dataclass(frozen=True, kw_only=True)
class GenericArchitecture:
    """A head family that runs on any backbone with multi-scale features."""

    name: str
    display_name: str
    note: str
    head: Literal["fcn", "deeplabv3"]
    builder: str
    config_class: str


GENERIC_ARCHITECTURES: tuple[GenericArchitecture, ...] = (
    GenericArchitecture(
        name="deeplabv3",
        display_name="DeepLabV3 (any backbone)",
        note="ASPP head on the last level of any multi-scale backbone; aux FCN head on the one "
        "before",
        head="deeplabv3",
        builder="visionatlas_segmentation.generic:deeplabv3",
        config_class="visionatlas_segmentation.config:DeepLabV3Config",
    ),
    GenericArchitecture(
        name="fcn",
        display_name="FCN (any backbone)",
        note="FCN head on the last level of any multi-scale backbone; aux FCN head on the one "
        "before",
        head="fcn",
        builder="visionatlas_segmentation.generic:fcn",
        config_class="visionatlas_segmentation.config:GenericSegmentationConfig",
    ),
)


def register_semantic_task(registrar: Registrar) -> None:
    """Register the ``segmentation`` task."""
    registrar.add_task(
        TaskSpec(
            name=TASK,
            display_name="Semantic segmentation",
            description="One class per pixel: (N, 3, H, W) images -> (N, num_classes, H, W) "
            "logits; trained on (N, H, W) int64 masks.",
            demo_architecture="lraspp_mobilenet",
            input_kind="image_batch",
        )
    )


def register_semantic_architectures(registrar: Registrar) -> None:
    """Register torchvision's six models and the generic ``deeplabv3`` and ``fcn``.

    The generic ones accept every backbone registered so far that has more than one
    feature level; their parameter count is for the default backbone and 21 classes.
    """
    for arch in TORCHVISION_ARCHITECTURES:
        registrar.add_architecture(
            ArchitectureSpec(
                task=TASK,
                name=arch.name,
                builder=f"visionatlas_segmentation.torchvision_models:{arch.name}",
                display_name=arch.display_name,
                note=arch.note,
                num_params=arch.num_params,
                default_num_classes=VOC_CLASSES,
                hyperparameters=arch.hyperparameters,
                pretrained_available=True,
                backbone=arch.backbone,
                compatible_backbones=(arch.backbone,),
                config_class="visionatlas_segmentation.config:SegmentationConfig",
                tags=("torchvision", "coco-voc", arch.head),
            )
        )
    multiscale = tuple(
        sorted(name for name, spec in registrar.backbones.items() if spec.multiscale)
    )
    default = registrar.backbones.get(DEFAULT_BACKBONE)
    for generic in GENERIC_ARCHITECTURES:
        num_params = None
        if default is not None and default.num_params is not None and default.multiscale:
            # ResNets have no pre-logits layers: the backbone's count is all the trunk's.
            main_in = default.feature_levels[-1].channels
            aux_in = default.feature_levels[-2].channels
            main = (deeplab_head_params if generic.head == "deeplabv3" else fcn_head_params)(
                main_in, VOC_CLASSES
            )
            num_params = default.num_params + main + fcn_head_params(aux_in, VOC_CLASSES)
        registrar.add_architecture(
            ArchitectureSpec(
                task=TASK,
                name=generic.name,
                builder=generic.builder,
                display_name=generic.display_name,
                note=generic.note,
                num_params=num_params,
                default_num_classes=VOC_CLASSES,
                hyperparameters=_GENERIC,
                pretrained_available=default is not None and default.pretrained_weights is not None,
                backbone=DEFAULT_BACKBONE,
                compatible_backbones=multiscale,
                config_class=generic.config_class,
                tags=("any-backbone", generic.head),
            )
        )
