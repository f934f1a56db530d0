"""The oriented detectors: config, train/eval contract, targets, learning, bad input."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
import torch
from pydantic import ValidationError

import visionatlas as va
from visionatlas.errors import IncompatibleBackboneError, InvalidInputError
from visionatlas_oriented.boxes import boxes_to_corners
from visionatlas_oriented.fcos import RotatedFCOS, decode_distances
from visionatlas_oriented.iou import rotated_box_iou

TASK = "oriented_object_detection"
ARCHITECTURES = ("rotated_fcos", "rotated_retinanet")


def _scene(seed: int = 0) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Two images with bright rotated bars on dark noise, and their boxes."""
    generator = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for boxes in (
        [[40.0, 50.0, 60.0, 14.0, 0.6], [100.0, 100.0, 40.0, 20.0, -1.2]],
        [[64.0, 70.0, 80.0, 10.0, -0.3]],
    ):
        box = torch.tensor(boxes)
        image = torch.rand(3, 144, 144, generator=generator) * 0.2
        ys, xs = torch.meshgrid(torch.arange(144.0), torch.arange(144.0), indexing="ij")
        for cx, cy, w, h, a in box.tolist():
            along = (xs - cx) * math.cos(a) + (ys - cy) * math.sin(a)
            across = -(xs - cx) * math.sin(a) + (ys - cy) * math.cos(a)
            inside = (along.abs() <= w / 2) & (across.abs() <= h / 2)
            image[:, inside] = 0.9
        images.append(image)
        targets.append({"boxes": box, "labels": torch.ones(len(boxes), dtype=torch.int64)})
    return images, targets


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_training_returns_losses_and_eval_returns_rotated_detections(
    name: str, small: dict[str, Any]
) -> None:
    torch.manual_seed(0)
    model = va.create_model(TASK, name, small, num_classes=3)
    images, targets = _scene()
    losses = model.train()(images, targets)
    assert {"classification", "bbox_regression"} <= set(losses)
    assert all(torch.isfinite(v) and v >= 0 for v in losses.values())
    sum(losses.values()).backward()
    head = model.head.cls_logits.weight.grad
    assert head is not None
    assert bool(head.abs().sum() > 0)
    model.eval()
    with torch.no_grad():
        outputs = model(images)
    assert len(outputs) == 2
    for output in outputs:
        n = output["boxes"].shape[0]
        assert output["boxes"].shape == (n, 5)
        assert output["polygons"].shape == (n, 4, 2)
        assert output["scores"].shape == output["labels"].shape == (n,)
        if n:
            assert bool((output["boxes"][:, 2] >= output["boxes"][:, 3]).all())
            assert bool((output["boxes"][:, 4] >= -math.pi / 2).all())
            assert bool((output["boxes"][:, 4] < math.pi / 2).all())
            torch.testing.assert_close(output["polygons"], boxes_to_corners(output["boxes"]))


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_a_few_steps_fit_two_images(name: str, small: dict[str, Any]) -> None:
    torch.manual_seed(0)
    model = va.create_model(TASK, name, {**small, "score_thresh": 0.2}, num_classes=2)
    images, targets = _scene()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    history = []
    for _ in range(60):
        losses = model(images, targets)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append(float(total.detach()))
    assert sum(history[-5:]) / 5 < 0.5 * sum(history[:5]) / 5
    model.eval()
    with torch.no_grad():
        found = model(images)[1]
    assert found["boxes"].shape[0] >= 1
    best = rotated_box_iou(found["boxes"][:1], targets[1]["boxes"])
    assert float(best.max()) > 0.5


def test_every_box_gets_a_location_even_a_thin_one(small: dict[str, Any]) -> None:
    model = va.create_model(TASK, "rotated_fcos", small, num_classes=2)
    assert isinstance(model, RotatedFCOS)
    shapes = [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2)]
    per_level = model.points(shapes, torch.device("cpu"))
    points = torch.cat(per_level)
    levels = torch.cat([torch.full((p.shape[0],), i) for i, p in enumerate(per_level)])
    boxes = torch.tensor([
        [60.0, 61.0, 50.0, 3.0, 0.785],  # a 3-pixel bar at 45 degrees between the grid points
        [100.0, 100.0, 120.0, 90.0, 0.1],
        [20.0, 130.0, 9.0, 8.0, -1.5],
    ])  # fmt: skip
    matched, centerness = model._assign(points, levels, boxes)
    assert set(matched[matched >= 0].tolist()) == {0, 1, 2}
    assert bool((centerness[matched >= 0] >= 0).all())
    assert bool((centerness <= 1).all())
    assert bool((centerness[matched < 0] == 0).all())


def test_distances_decode_to_the_box_they_were_measured_on() -> None:
    box = torch.tensor([[50.0, 40.0, 30.0, 12.0, 0.7]])
    point = torch.tensor([[55.0, 44.0]])
    cos, sin = math.cos(0.7), math.sin(0.7)
    dx, dy = 5.0, 4.0
    along, across = dx * cos + dy * sin, -dx * sin + dy * cos
    distances = torch.tensor([[15 + along, 6 + across, 15 - along, 6 - across]])
    decoded = decode_distances(point, distances, torch.tensor([0.7]))
    torch.testing.assert_close(decoded, box)


def test_bad_targets_are_refused_with_the_rule(small: dict[str, Any]) -> None:
    model = va.create_model(TASK, "rotated_fcos", small, num_classes=3).train()
    images, targets = _scene()
    cases = {
        "angle": torch.tensor([[40.0, 50.0, 60.0, 14.0, 2.0]]),
        r"w|h": torch.tensor([[40.0, 50.0, 10.0, 14.0, 0.0]]),
        "shape": torch.tensor([[40.0, 50.0, 60.0, 14.0]]),
    }
    for word, boxes in cases.items():
        bad = [{"boxes": boxes, "labels": torch.ones(len(boxes), dtype=torch.int64)}, targets[1]]
        with pytest.raises(InvalidInputError, match=r"targets\[0\]\['boxes'\]") as caught:
            model(images, bad)
        assert re.search(word, str(caught.value))
        assert "le90" in str(caught.value)
    bad = [{"boxes": targets[0]["boxes"], "labels": torch.tensor([1, 3])}, targets[1]]
    with pytest.raises(InvalidInputError, match=r"outside \[1, 2\]"):
        model(images, bad)
    with pytest.raises(InvalidInputError, match="needs targets"):
        model(images)


def test_config_options_are_checked_and_applied(small: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="multiple of 32"):
        va.create_model(TASK, "rotated_fcos", {"fpn_channels": 48})
    with pytest.raises(ValidationError, match="angle_loss='smooth_l1'"):
        va.create_model(TASK, "rotated_fcos", {"angle_loss_weight": 2.0})
    with pytest.raises(ValidationError, match="regression_loss"):
        va.create_model(TASK, "rotated_fcos", {"regression_loss": "giou"})
    with pytest.raises(IncompatibleBackboneError, match="accepts only 'resnet50'"):
        va.create_model(TASK, "rotated_fcos_resnet50", {"backbone": "resnet18"})
    model = va.create_model(
        TASK, "rotated_retinanet",
        {**small, "regression_loss": "kld", "angle_loss": "smooth_l1", "nms_thresh": 0.3,
         "detections_per_img": 7},
        num_classes=3,
    )  # fmt: skip
    assert model.loss_settings.regression == "kld"
    assert (model.inference.nms_thresh, model.inference.detections_per_img) == (0.3, 7)
    images, targets = _scene()
    losses = model.train()(images, targets)
    assert {"classification", "bbox_regression", "angle"} == set(losses)
    with torch.no_grad():
        assert all(len(o["boxes"]) <= 7 for o in model.eval()(images))


def test_trainable_layers_and_two_phase_freezing(small: dict[str, Any]) -> None:
    model = va.create_model(TASK, "rotated_fcos", {**small, "trainable_backbone_layers": 2})
    stages = model.backbone_stages()
    assert not any(p.requires_grad for s in stages[:-2] for p in s.parameters())
    assert all(p.requires_grad for s in stages[-2:] for p in s.parameters())
    model.freeze_backbone()
    assert not any(p.requires_grad for s in stages for p in s.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    model.unfreeze_backbone()
    assert all(p.requires_grad for s in stages for p in s.parameters())


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_the_exportable_forward_keeps_eager_modes_detections(
    name: str, small: dict[str, Any]
) -> None:
    from visionatlas_oriented.export import ExportableOrientedDetector

    torch.manual_seed(0)
    model = va.create_model(TASK, name, {**small, "score_thresh": 0.0}, num_classes=3).eval()
    images, _ = _scene()
    batch = torch.stack([images[0], images[0].flip(-1)])
    with torch.no_grad():
        eager = model(list(batch))
        fixed = ExportableOrientedDetector(model, detections=12)(batch)
    assert fixed["boxes"].shape == (2, 12, 5)
    assert fixed["polygons"].shape == (2, 12, 4, 2)
    for index, detections in enumerate(eager):
        count = min(12, detections["boxes"].shape[0])
        assert count == 12
        torch.testing.assert_close(fixed["boxes"][index, :count], detections["boxes"][:count],
                                   atol=1e-4, rtol=1e-4)  # fmt: skip
        torch.testing.assert_close(fixed["scores"][index, :count], detections["scores"][:count])
        assert torch.equal(fixed["labels"][index, :count], detections["labels"][:count])
