"""The regression plugin: outputs, config extension and training signal."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

import visionatlas as va


def test_default_is_one_output() -> None:
    model = va.create_model("regression", "resnet18").eval()
    assert model(torch.rand(3, 3, 64, 64)).shape == (3, 1)
    info = model.visionatlas_info
    assert info.config["num_outputs"] is None
    assert info.num_classes == 1


def test_num_outputs_from_config_or_num_classes() -> None:
    assert va.create_model("regression", "resnet18", {"num_outputs": 4}).head.fc.out_features == 4
    assert va.create_model("regression", "resnet18", num_classes=3).head.fc.out_features == 3
    with pytest.raises(ValueError, match="disagree"):
        va.create_model("regression", "resnet18", {"num_outputs": 4}, num_classes=3)


@pytest.mark.parametrize(("config", "num_classes"), [({"num_outputs": 3}, None), ({}, 3)])
def test_build_info_rebuilds_the_same_model(
    config: dict[str, int], num_classes: int | None
) -> None:
    model = va.create_model("regression", "resnet18", config, num_classes=num_classes)
    info = model.visionatlas_info
    again = va.create_model(info.task, info.architecture, info.config, info.num_classes)
    assert again.head.fc.out_features == model.head.fc.out_features == 3


def test_accepts_a_plain_model_config() -> None:
    model = va.create_model("regression", "mobilenet_v3_small", va.ModelConfig(dropout=0.3))
    assert model.head.dropout.p == 0.3
    assert model.head.fc.out_features == 1


def test_learns_a_linear_target() -> None:
    torch.manual_seed(0)
    model = va.create_model("regression", "resnet18", {"num_outputs": 2}).train()
    x = torch.rand(8, 3, 32, 32)
    target = torch.stack([x.mean((1, 2, 3)), x[:, 0].mean((1, 2))], dim=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.1


# -- config strictness, class-count bound and input checks (issue 11) -----------------------------
@pytest.mark.parametrize("value", ["2", 2.0, True])
def test_num_outputs_must_be_an_int(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        va.get_catalog().make_config("regression", "resnet18", {"num_outputs": value})
    assert info.value.errors()[0]["loc"] == ("num_outputs",)
    assert "valid integer" in info.value.errors()[0]["msg"]


def test_a_regressor_refuses_grey_images_and_names_nan_ones() -> None:
    model = va.create_model("regression", "mobilenet_v3_small", check_inputs=True).eval()
    with pytest.raises(va.InvalidInputError, match=r"images have 1 channel \(shape"):
        model(torch.rand(2, 1, 32, 32))
    images = torch.rand(2, 3, 32, 32)
    images[0, 0, 0, :2] = float("inf")
    with torch.no_grad(), pytest.raises(va.NonFiniteInputError) as info:
        model(images)
    assert info.value.counts == {0: (0, 2, 0)}
    assert "regression/mobilenet_v3_small" in str(info.value)
