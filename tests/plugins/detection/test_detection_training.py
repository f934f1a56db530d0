"""Every detector trains (finite losses, a step that moves weights) and predicts as documented."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

import visionatlas as va

TASK = "object_detection"
CASES: list[tuple[str, dict[str, Any]]] = [
    ("fasterrcnn_resnet50", {"proposals_per_image": 64}),
    ("fasterrcnn_resnet50_v2", {"proposals_per_image": 64}),
    ("fcos_resnet50", {}),
    ("retinanet_resnet50", {}),
    ("retinanet_resnet50_v2", {}),
    ("ssdlite_mobilenet_v3", {"min_size": 128}),
    ("fasterrcnn", {"backbone": "resnet18", "proposals_per_image": 64}),
    ("fcos", {"backbone": "mobilenet_v3_small"}),
    ("fcos", {"backbone": "efficientnet_b0"}),
    ("retinanet", {"backbone": "resnet18"}),
]
LOSSES = {
    "fasterrcnn": {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"},
    "fcos": {"classification", "bbox_regression", "bbox_ctrness"},
    "retinanet": {"classification", "bbox_regression"},
    "ssdlite": {"classification", "bbox_regression"},
}
NUM_CLASSES = 4


Batch = tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]


def check_predictions(
    predictions: Any, images: list[torch.Tensor], num_classes: int, max_detections: int
) -> None:
    """The documented eval output: one dict per image, boxes inside the image."""
    assert isinstance(predictions, list)
    assert len(predictions) == len(images)
    for prediction, image in zip(predictions, images, strict=True):
        boxes, labels, scores = prediction["boxes"], prediction["labels"], prediction["scores"]
        count = boxes.shape[0]
        assert boxes.shape == (count, 4)
        assert boxes.dtype == torch.float32
        assert labels.shape == (count,)
        assert labels.dtype == torch.int64
        assert scores.shape == (count,)
        assert scores.is_floating_point()
        assert count <= max_detections
        height, width = image.shape[1:]
        assert bool((boxes[:, 0] >= 0).all() and (boxes[:, 2] <= width).all())
        assert bool((boxes[:, 1] >= 0).all() and (boxes[:, 3] <= height).all())
        assert bool((boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all())
        assert bool(((labels >= 0) & (labels < num_classes)).all())
        assert bool(((scores >= 0) & (scores <= 1)).all())


@pytest.mark.parametrize(
    ("name", "extra"), CASES, ids=[f"{n}-{e.get('backbone', 'own')}" for n, e in CASES]
)
def test_trains_and_predicts(
    name: str, extra: dict[str, Any], small: dict[str, int], make_batch: Callable[..., Batch]
) -> None:
    torch.manual_seed(0)
    config = extra if name.startswith("ssdlite") else {**small, **extra}
    model = va.create_model(TASK, name, config, num_classes=NUM_CLASSES)
    images, targets = make_batch()
    model.train()
    losses = model(images, targets)
    family = next(key for key in LOSSES if name.startswith(key))
    assert set(losses) == LOSSES[family]
    assert all(bool(torch.isfinite(loss)) for loss in losses.values())
    trainable = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trainable]
    optimizer = torch.optim.SGD(trainable, lr=0.01)
    optimizer.zero_grad()
    sum(losses.values()).backward()
    optimizer.step()
    moved = [not torch.equal(p, b) for p, b in zip(trainable, before, strict=True)]
    assert sum(moved) > 0.5 * len(moved)  # most weights received a gradient
    first_stage = next(model.backbone_stages()[-1].parameters())
    assert first_stage.requires_grad
    assert first_stage.grad is not None

    model.eval()
    with torch.no_grad():
        predictions = model(images)
    limit = 300 if name.startswith("ssdlite") else 100
    check_predictions(predictions, images, NUM_CLASSES, limit)


def test_batched_tensor_equals_list_input(small: dict[str, int]) -> None:
    torch.manual_seed(0)
    model = va.create_model(
        TASK, "fcos", {**small, "backbone": "resnet18", "score_thresh": 0.0}, num_classes=3
    ).eval()
    batch = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        from_tensor, from_list = model(batch), model(list(batch))
    for a, b in zip(from_tensor, from_list, strict=True):
        torch.testing.assert_close(a["boxes"], b["boxes"])
        torch.testing.assert_close(a["scores"], b["scores"])


def test_images_without_objects_train(
    small: dict[str, int], make_batch: Callable[..., Batch]
) -> None:
    torch.manual_seed(0)
    model = va.create_model(TASK, "retinanet", {**small, "backbone": "resnet18"}, num_classes=3)
    images, targets = make_batch()
    targets[1] = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    losses = model.train()(images, targets)
    assert all(bool(torch.isfinite(loss)) for loss in losses.values())


def test_detection_options_reach_the_model() -> None:
    config = {
        "min_size": 200,
        "max_size": 300,
        "score_thresh": 0.3,
        "nms_thresh": 0.4,
        "detections_per_img": 7,
        "image_mean": (0.1, 0.2, 0.3),
        "image_std": (0.5, 0.5, 0.5),
    }
    with torch.device("meta"):
        rcnn = va.create_model(TASK, "fasterrcnn_resnet50", config)
        fcos = va.create_model(TASK, "fcos", {**config, "backbone": "resnet18"})
        ssd = va.create_model(TASK, "ssdlite_mobilenet_v3", {"min_size": 256, "score_thresh": 0.2})
    assert rcnn.transform.min_size == (200,)
    assert rcnn.transform.max_size == 300
    assert rcnn.transform.image_mean == [0.1, 0.2, 0.3]
    heads = rcnn.roi_heads
    assert (heads.score_thresh, heads.nms_thresh, heads.detections_per_img) == (0.3, 0.4, 7)
    assert (fcos.score_thresh, fcos.nms_thresh, fcos.detections_per_img) == (0.3, 0.4, 7)
    assert ssd.transform.fixed_size == (256, 256)
    assert ssd.score_thresh == 0.2
    assert ssd.nms_thresh == 0.55
    assert ssd.detections_per_img == 300
    with torch.device("meta"):
        few = va.create_model(
            TASK, "fasterrcnn", {"backbone": "resnet18", "proposals_per_image": 50}
        )
    assert few.rpn._pre_nms_top_n == {"training": 50, "testing": 50}
    assert few.rpn._post_nms_top_n == {"training": 50, "testing": 50}


def test_any_backbone_fpn_channels() -> None:
    with torch.device("meta"):
        model = va.create_model(TASK, "fcos", {"backbone": "resnet18", "fpn_channels": 128})
    assert model.backbone.out_channels == 128
    assert model.backbone.fpn.layer_blocks[0][0].out_channels == 128
    assert model.head.classification_head.cls_logits.in_channels == 128
    assert model.backbone.levels == ("feat2", "feat3", "feat4")


def test_swin_backbone_trains(small: dict[str, int], make_batch: Callable[..., Batch]) -> None:
    torch.manual_seed(0)
    model = va.create_model(TASK, "fcos", {**small, "backbone": "swin_t"}, num_classes=4)
    images, targets = make_batch()
    losses = model.train()(images, targets)
    sum(losses.values()).backward()
    assert all(bool(torch.isfinite(loss)) for loss in losses.values())
