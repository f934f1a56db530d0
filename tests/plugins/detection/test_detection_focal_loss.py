"""focal_alpha and focal_gamma reach the FCOS and RetinaNet classification losses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

import visionatlas as va
from visionatlas_detection.heads import FocalFCOSHead, FocalRetinaNetHead

TASK = "object_detection"
Batch = tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]


def _losses(
    name: str, focal: dict[str, float], state: dict[str, torch.Tensor] | None, batch: Batch
) -> tuple[dict[str, torch.Tensor], Any]:
    config = {"backbone": "mobilenet_v3_small", "min_size": 96, "max_size": 128, **focal}
    model = va.create_model(TASK, name, config, num_classes=4)
    if state is not None:
        model.load_state_dict(state)
    images, targets = batch
    return model.train()(images, targets), model


@pytest.mark.parametrize("name", ["fcos", "retinanet"])
def test_focal_settings_change_only_the_classification_loss(
    name: str, make_batch: Callable[..., Batch]
) -> None:
    batch = make_batch()
    torch.manual_seed(0)
    default, model = _losses(name, {}, None, batch)
    state = model.state_dict()
    custom, custom_model = _losses(name, {"focal_alpha": 0.5, "focal_gamma": 1.0}, state, batch)
    assert (custom_model.head.focal_alpha, custom_model.head.focal_gamma) == (0.5, 1.0)
    assert not torch.allclose(custom["classification"], default["classification"])
    for key in default:
        if key != "classification":
            torch.testing.assert_close(custom[key], default[key])
    custom["classification"].backward()
    logits = custom_model.head.classification_head.cls_logits.weight.grad
    assert logits is not None
    assert bool(torch.isfinite(logits).all())

    # the reimplemented loss, at torchvision's values, gives torchvision's number
    same, _ = _losses(name, {"focal_alpha": 0.25, "focal_gamma": 2.0}, state, batch)
    torch.testing.assert_close(same["classification"], default["classification"])
    head = custom_model.head
    head.focal_alpha, head.focal_gamma = 0.25, 2.0
    recomputed = _recompute(custom_model, batch)
    torch.testing.assert_close(recomputed, default["classification"])


def _recompute(model: Any, batch: Batch) -> torch.Tensor:
    """Our classification_loss at torchvision's defaults, on the model's own matching."""
    captured: dict[str, Any] = {}
    head = model.head
    original = type(head).compute_loss

    def capture(self: Any, targets: Any, head_outputs: Any, anchors: Any, matched_idxs: Any) -> Any:
        captured.update(targets=targets, logits=head_outputs["cls_logits"], matched=matched_idxs)
        return original(self, targets, head_outputs, anchors, matched_idxs)

    head.compute_loss = capture.__get__(head)
    try:
        images, targets = batch
        model.train()(images, targets)
    finally:
        del head.compute_loss
    return head.classification_loss(captured["targets"], captured["logits"], captured["matched"])


def test_gamma_zero_is_weighted_cross_entropy(make_batch: Callable[..., Batch]) -> None:
    """alpha=0.5, gamma=0: the focal loss is half the binary cross-entropy."""
    torch.manual_seed(0)
    _, model = _losses("fcos", {"focal_alpha": 0.5, "focal_gamma": 0.0}, None, make_batch())
    head: FocalFCOSHead = model.head
    logits = torch.randn(1, 6, 4)
    matched = [torch.tensor([-1, 0, -1, 1, -1, -1])]
    targets = [{"labels": torch.tensor([2, 3]), "boxes": torch.zeros(2, 4)}]
    onehot = torch.zeros(1, 6, 4)
    onehot[0, 1, 2] = onehot[0, 3, 3] = 1.0
    expected = (
        0.5
        * torch.nn.functional.binary_cross_entropy_with_logits(logits, onehot, reduction="sum")
        / 2
    )  # two foreground locations
    torch.testing.assert_close(head.classification_loss(targets, logits, matched), expected)


def test_heads_are_the_focal_subclasses() -> None:
    with torch.device("meta"):
        fcos = va.create_model(TASK, "fcos_resnet50", {"focal_gamma": 3.0})
        retina = va.create_model(TASK, "retinanet_resnet50_v2", {"focal_alpha": 0.3})
    assert isinstance(fcos.head, FocalFCOSHead)
    assert fcos.head.focal_gamma == 3.0
    assert isinstance(retina.head, FocalRetinaNetHead)
    assert retina.head.focal_alpha == 0.3
    assert retina.head.focal_gamma == 2.0
