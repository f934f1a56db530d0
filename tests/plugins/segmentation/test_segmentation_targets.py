"""The train/eval contract of segmentation models: targets, losses, auxiliary head."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.nn import functional as F

import visionatlas as va
from visionatlas_segmentation.model import SegmentationModel
from visionatlas_segmentation.targets import SegmentationTargetError

TASK = "segmentation"
NUM_CLASSES = 4


@pytest.fixture(scope="module")
def model() -> SegmentationModel:
    """A small generic DeepLabV3 (auxiliary head on), shared: tests only run forwards."""
    torch.manual_seed(0)
    built = va.create_model(
        TASK, "deeplabv3", {"backbone": "mobilenet_v3_small"}, num_classes=NUM_CLASSES
    )
    assert isinstance(built, SegmentationModel)
    return built.eval()  # eval: dropout off, so losses are deterministic


def _images(n: int = 2, h: int = 32, w: int = 48) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(1))


def _masks(n: int = 2, h: int = 32, w: int = 48) -> torch.Tensor:
    return torch.randint(0, NUM_CLASSES, (n, h, w), generator=torch.Generator().manual_seed(2))


def _with_label(label: int) -> torch.Tensor:
    masks = _masks()
    masks[1, 5, 7] = label
    return masks


@pytest.mark.parametrize(
    ("targets", "error", "message"),
    [
        (_masks(h=30), SegmentationTargetError, "mask size 30x48 differs from image size 32x48"),
        (_masks(n=3), SegmentationTargetError, "3 masks"),
        (_masks().to(torch.uint8), SegmentationTargetError, "int64"),
        (_masks().float(), SegmentationTargetError, "round float masks"),
        (_masks()[:, None], SegmentationTargetError, "targets[:, 0]"),
        (_masks()[0], SegmentationTargetError, "(N, H, W)"),
        ([_masks()[0], _masks()[1]], TypeError, "torch.stack"),
        (_with_label(7), SegmentationTargetError, "labels 7, outside the class range [0, 3]"),
        (_masks() - 1, SegmentationTargetError, "labels -1, outside"),
    ],
)  # fmt: skip
def test_bad_targets_are_refused_clearly(
    model: SegmentationModel, targets: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        model(_images(), targets)
    assert message in str(info.value)


def test_target_errors_are_value_errors() -> None:
    assert issubclass(SegmentationTargetError, ValueError)
    assert issubclass(SegmentationTargetError, va.VisionAtlasError)


@pytest.mark.parametrize(
    ("images", "error", "message"),
    [
        (torch.rand(3, 32, 32), ValueError, "images.unsqueeze(0)"),
        ((torch.rand(2, 3, 32, 32) * 255).to(torch.uint8), TypeError, "floating point"),
        ([torch.rand(3, 32, 32)], TypeError, "got list"),
    ],
)
def test_bad_images_are_refused(
    model: SegmentationModel, images: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match="images") as info:
        model(images)
    assert message in str(info.value)


def test_ignore_index_pixels_are_left_out(model: SegmentationModel) -> None:
    images, masks = _images(), _masks()
    ignored = masks.clone()
    ignored[:, :, :10] = 255
    with torch.no_grad():
        logits = model(images)
        losses = model(images, ignored)
    expected = F.cross_entropy(logits, ignored, ignore_index=255)
    torch.testing.assert_close(losses["loss_main"], expected)
    counted = F.cross_entropy(logits[..., 10:], masks[..., 10:])  # the same, by cropping
    torch.testing.assert_close(losses["loss_main"], counted)


def test_all_pixels_ignored_gives_zero_loss_with_a_graph() -> None:
    model = va.create_model(TASK, "lraspp_mobilenet", num_classes=NUM_CLASSES).train()
    masks = torch.full((2, 32, 48), 255, dtype=torch.long)
    losses = model(_images(), masks)
    assert losses["loss"].item() == 0.0
    losses["loss"].backward()  # no NaN, nothing learnt
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads
    assert all(torch.equal(g, torch.zeros_like(g)) for g in grads)


def test_ignore_index_inside_the_class_range() -> None:
    model = va.create_model(
        TASK, "deeplabv3", {"backbone": "resnet18", "ignore_index": 0}, num_classes=NUM_CLASSES
    ).eval()
    images, masks = _images(), _masks()
    with torch.no_grad():
        expected = F.cross_entropy(model(images), masks, ignore_index=0)
        torch.testing.assert_close(model(images, masks)["loss_main"], expected)


def test_training_forward_without_targets_returns_logits() -> None:
    model = va.create_model(TASK, "fcn", {"backbone": "resnet18"}, num_classes=NUM_CLASSES)
    model.train()
    logits = model(_images())
    assert isinstance(logits, torch.Tensor)
    assert logits.shape == (2, NUM_CLASSES, 32, 48)
    assert logits.requires_grad


def test_eval_forward_with_targets_returns_validation_losses(model: SegmentationModel) -> None:
    images, masks = _images(), _masks()
    with torch.no_grad():
        logits = model(images)
        losses = model(images, masks)
    assert set(losses) == {"loss", "loss_main", "loss_aux"}
    torch.testing.assert_close(losses["loss_main"], F.cross_entropy(logits, masks))


def test_aux_loss_on_off_and_weight() -> None:
    torch.manual_seed(5)
    config: dict[str, Any] = {"backbone": "resnet18", "aux_loss_weight": 0.25}
    with_aux = va.create_model(TASK, "fcn", config, num_classes=NUM_CLASSES).eval()
    images, masks = _images(), _masks()
    with torch.no_grad():
        losses = with_aux(images, masks)
    torch.testing.assert_close(losses["loss"], losses["loss_main"] + 0.25 * losses["loss_aux"])
    without = va.create_model(
        TASK, "fcn", {**config, "aux_loss": False}, num_classes=NUM_CLASSES
    ).eval()
    assert without.aux_classifier is None
    without.load_state_dict(with_aux.state_dict(), strict=False)
    with torch.no_grad():
        plain = without(images, masks)
    assert set(plain) == {"loss", "loss_main"}
    torch.testing.assert_close(plain["loss"], losses["loss_main"])


def test_aux_loss_off_on_torchvision_architecture() -> None:
    model = va.create_model(TASK, "deeplabv3_mobilenet", {"aux_loss": False}, num_classes=3)
    assert model.aux_classifier is None
    assert set(model.backbone.return_layers.values()) == {"out"}


def test_aux_loss_on_lraspp_is_refused() -> None:
    with pytest.raises(ValueError, match="no auxiliary head"):
        va.create_model(TASK, "lraspp_mobilenet", {"aux_loss": True})


def test_class_weights_and_label_smoothing() -> None:
    weights = (0.1, 1.0, 2.0, 0.5)
    model = va.create_model(
        TASK,
        "fcn",
        {"backbone": "resnet18", "class_weights": weights, "label_smoothing": 0.1},
        num_classes=NUM_CLASSES,
    ).eval()
    images, masks = _images(), _masks()
    with torch.no_grad():
        expected = F.cross_entropy(
            model(images), masks, weight=torch.tensor(weights), label_smoothing=0.1
        )
        torch.testing.assert_close(model(images, masks)["loss_main"], expected)
    assert "criterion.class_weights" not in model.state_dict()


def test_class_weights_must_match_num_classes() -> None:
    with pytest.raises(
        ValueError, match="class_weights has 2 values but the model has num_classes=4"
    ):
        va.create_model(
            TASK, "fcn", {"backbone": "resnet18", "class_weights": [1, 2]}, num_classes=NUM_CLASSES
        )


@pytest.mark.parametrize(
    ("images", "found"),
    [
        (torch.rand(2, 1, 32, 48), "images have 1 channel (shape (2, 1, 32, 48))"),
        (torch.rand(2, 4, 32, 48), "images have 4 channels (shape (2, 4, 32, 48))"),
    ],
    ids=["grey", "rgba"],
)
def test_grey_and_rgba_images_are_refused_before_the_backbone(
    model: SegmentationModel, images: torch.Tensor, found: str
) -> None:
    with pytest.raises(va.InvalidInputError) as info:
        model(images)
    message = str(info.value)
    assert message.startswith(found)
    assert (
        "segmentation/deeplabv3 expects images as a float tensor of shape (N, 3, H, W)" in message
    )


def test_nan_pixels_are_named_when_checked(model: SegmentationModel) -> None:
    images = _images(3)
    images[1, 2, 10, :4] = float("nan")
    with torch.no_grad():
        assert torch.isnan(model(images)[1]).any()  # silent without the check
        with va.checking_inputs(), pytest.raises(va.NonFiniteInputError) as info:
            model(images)
    assert info.value.counts == {1: (4, 0, 0)}
    assert "images[1] has 4 NaN, 0 +inf and 0 -inf values" in str(info.value)


def test_instance_segmentation_checks_its_image_list() -> None:
    with torch.device("meta"):
        model = va.create_model("instance_segmentation", "maskrcnn_resnet50", num_classes=3)
        images = [torch.rand(3, 32, 32), torch.rand(1, 32, 32)]
    with pytest.raises(va.InvalidInputError, match=r"images\[1\] has shape \(1, 32, 32\)") as info:
        model.eval()(images)
    assert info.value.index == 1
    assert "instance_segmentation/maskrcnn_resnet50 expects images as a list" in str(info.value)
