"""The regression plugin: outputs, config extension and training signal."""

from __future__ import annotations

import pytest
import torch

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
