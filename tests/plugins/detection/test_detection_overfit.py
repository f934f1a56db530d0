"""FCOS learns: a few dozen steps on one image cut its loss and then find the object."""

from __future__ import annotations

import torch
from torchvision.ops import box_iou

import visionatlas as va

SEED = 35
"""Seed of the image and the initial weights. FCOS's box regression ends in a ReLU; on a
single object (nine positive locations) an unlucky initialisation can leave a side's output
at zero for good. With this seed every side starts alive, on the machines we tried."""
STEPS = 40
BOX = (32, 38, 96, 89)


def _one_object_image() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(SEED)
    image = torch.rand(3, 128, 128, generator=generator) * 0.4  # noisy dark background
    x1, y1, x2, y2 = BOX
    patch = torch.rand(3, y2 - y1, x2 - x1, generator=generator)
    image[:, y1:y2, x1:x2] = 0.8 + 0.2 * patch  # a bright textured rectangle
    return image, torch.tensor([BOX], dtype=torch.float32)


def test_fcos_overfits_one_object() -> None:
    image, box = _one_object_image()
    targets = [{"boxes": box, "labels": torch.tensor([2])}]
    torch.manual_seed(SEED)
    config = {"backbone": "resnet18", "min_size": 128, "max_size": 128}
    model = va.create_model("object_detection", "fcos", config, num_classes=3)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 10))
    model.train()
    detection_losses = []
    for _ in range(STEPS):
        losses = model([image], targets)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        warmup.step()
        # centerness is a BCE against soft targets, with a floor above zero; leave it out
        detection = losses["classification"] + losses["bbox_regression"]
        detection_losses.append(float(detection.detach()))
    factor = detection_losses[0] / detection_losses[-1]
    assert factor >= 5, f"detection loss fell only {factor:.1f}x: {detection_losses[::5]}"

    model.eval()
    with torch.no_grad():
        prediction = model([image])[0]
    assert len(prediction["boxes"]) > 0
    top = int(prediction["scores"].argmax())
    assert int(prediction["labels"][top]) == 2
    iou = float(box_iou(prediction["boxes"][top : top + 1], box)[0, 0])
    assert iou > 0.5, f"top box {prediction['boxes'][top].tolist()} has IoU {iou:.2f}"
