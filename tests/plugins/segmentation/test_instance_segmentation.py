"""Mask R-CNN (``instance_segmentation``): discovery, torchvision parity, training, masks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torchvision.models import detection as tv_detection

import visionatlas as va
from visionatlas_detection.inputs import DetectionInputError
from visionatlas_segmentation.instance import MaskRCNNDetector

TASK = "instance_segmentation"
SMALL = {"min_size": 96, "max_size": 128, "proposals_per_image": 64}
TORCHVISION = {
    "maskrcnn_resnet50": tv_detection.maskrcnn_resnet50_fpn,
    "maskrcnn_resnet50_v2": tv_detection.maskrcnn_resnet50_fpn_v2,
}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Many small convolutions: one thread is much faster on a loaded small machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Two images with bright rectangles, their boxes, labels and masks."""
    generator = torch.Generator().manual_seed(0)
    images, targets = [], []
    for (height, width), boxes, labels in (
        ((96, 128), [(10, 12, 60, 70), (70, 5, 120, 40)], [1, 2]),
        ((112, 96), [(5, 8, 50, 100)], [3]),
    ):
        image = torch.rand(3, height, width, generator=generator) * 0.5
        masks = torch.zeros(len(boxes), height, width, dtype=torch.uint8)
        for k, (x1, y1, x2, y2) in enumerate(boxes):
            image[:, y1:y2, x1:x2] += 0.5
            masks[k, y1:y2, x1 + 5 : x2 - 5] = 1  # not the full box: shapes matter
        images.append(image)
        targets.append(
            {
                "boxes": torch.tensor(boxes, dtype=torch.float32),
                "labels": torch.tensor(labels),
                "masks": masks,
            }
        )
    return images, targets


def test_discovered_with_the_segmentation_plugin() -> None:
    assert va.list_architectures(TASK) == ["maskrcnn", "maskrcnn_resnet50", "maskrcnn_resnet50_v2"]
    task = va.get_task(TASK)
    assert task.demo_architecture == "maskrcnn_resnet50"
    spec = va.get_architecture(TASK, "maskrcnn")
    assert "swin_t" in spec.compatible_backbones
    assert "vit_b_16" not in spec.compatible_backbones
    schema = va.config_schema(TASK, "maskrcnn_resnet50")
    assert "proposals_per_image" in schema["properties"]
    images = va.get_catalog().example_inputs(TASK, batch_size=2, input_size=(64, 80))
    assert [tuple(image.shape) for image in images] == [(3, 64, 80), (3, 64, 80)]


@pytest.mark.parametrize("name", ["maskrcnn", "maskrcnn_resnet50", "maskrcnn_resnet50_v2"])
def test_parameter_count_metadata_matches_construction(name: str) -> None:
    with torch.device("meta"):
        model = va.create_model(TASK, name)
    assert (
        va.count_parameters(model, trainable_only=False)
        == va.get_architecture(TASK, name).num_params
    )


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_same_modules_as_the_torchvision_builder(name: str) -> None:
    with torch.device("meta"):
        ours = va.create_model(TASK, name)
        reference = TORCHVISION[name](weights=None, weights_backbone=None)
    assert isinstance(ours, MaskRCNNDetector)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("maskrcnn_resnet50", {}),
        ("maskrcnn_resnet50_v2", {}),
        ("maskrcnn", {"backbone": "resnet18"}),
    ],
)
def test_trains_and_predicts_masks(name: str, extra: dict[str, Any]) -> None:
    torch.manual_seed(0)
    model = va.create_model(TASK, name, {**SMALL, **extra}, num_classes=4)
    images, targets = _batch()
    losses = model.train()(images, targets)
    assert "loss_mask" in losses
    assert all(bool(torch.isfinite(loss)) for loss in losses.values())
    mask_logits = model.roi_heads.mask_predictor.mask_fcn_logits.weight
    before = mask_logits.detach().clone()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    sum(losses.values()).backward()
    optimizer.step()
    assert not torch.equal(mask_logits.detach(), before)

    model.eval()
    with torch.no_grad():
        predictions = model(images)
    for prediction, image in zip(predictions, images, strict=True):
        count = prediction["boxes"].shape[0]
        assert prediction["labels"].shape == prediction["scores"].shape == (count,)
        masks = prediction["masks"]
        assert masks.shape == (count, 1, *image.shape[1:])
        assert masks.is_floating_point()
        assert bool(((masks >= 0) & (masks <= 1)).all())


def test_targets_need_masks_of_the_image_size() -> None:
    model = va.create_model(TASK, "maskrcnn", {**SMALL, "backbone": "resnet18"}, 4).train()
    images, targets = _batch()
    targets[1]["masks"] = torch.zeros(1, 96, 96, dtype=torch.uint8)
    with pytest.raises(
        DetectionInputError, match=r"targets\[1\]\['masks'\] has shape \(1, 96, 96\)"
    ):
        model(images, targets)
    del targets[0]["masks"]
    with pytest.raises(DetectionInputError, match=r"targets\[0\] has no 'masks'"):
        model(images, targets)


def test_full_checkpoint_with_other_classes_keeps_the_mask_head(tmp_path: Path) -> None:
    config = {**SMALL, "backbone": "resnet18"}
    torch.manual_seed(0)
    source = va.create_model(TASK, "maskrcnn", config)  # 91 classes
    path = tmp_path / "maskrcnn-r18.pth"
    torch.save(source.state_dict(), path)
    model = va.create_model(
        TASK, "maskrcnn", {**config, "weights_path": path, "pretrained_scope": "full"}, 6
    )
    predictor = model.roi_heads.mask_predictor
    assert predictor.mask_fcn_logits.out_channels == 6
    assert model.roi_heads.box_predictor.cls_score.out_features == 6
    assert model.roi_heads.box_predictor.bbox_pred.out_features == 24
    kept = source.roi_heads.mask_predictor.conv5_mask.weight
    assert torch.equal(predictor.conv5_mask.weight, kept)
    assert torch.equal(
        model.roi_heads.mask_head[0][0].weight, source.roi_heads.mask_head[0][0].weight
    )


def test_pretrained_offline_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("VISIONATLAS_OFFLINE", "1")
    with pytest.raises(va.PretrainedWeightsError) as info:
        va.create_model(TASK, "maskrcnn_resnet50", {"pretrained": True})
    assert str(tmp_path / "hub" / "checkpoints" / "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth") in str(
        info.value
    )


def test_options_and_freezing() -> None:
    with torch.device("meta"):
        model = va.create_model(TASK, "maskrcnn_resnet50", {"trainable_backbone_layers": 2})
    body = model.backbone.body
    trainable = {n.split(".")[0] for n, p in body.named_parameters() if p.requires_grad}
    assert trainable == {"layer3", "layer4"}
    with pytest.raises(ValueError, match="apply to FCOS and RetinaNet"):
        va.create_model(TASK, "maskrcnn", {"focal_alpha": 0.5})
    with pytest.raises(va.IncompatibleBackboneError, match="single feature level"):
        va.create_model(TASK, "maskrcnn", {"backbone": "vit_b_32"})
