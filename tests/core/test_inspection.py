"""Parameter counts, output-shape inference on the meta device, and summaries."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import visionatlas as va


class _TwoOutputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.bn(self.conv(x))
        return {"map": f, "logits": self.fc(f.mean((2, 3)))}


def test_count_parameters_trainable_and_total() -> None:
    model = _TwoOutputs()
    total = 3 * 8 * 9 + 8 + 16 + 8 * 5 + 5
    assert va.count_parameters(model, trainable_only=False) == total
    model.conv.requires_grad_(False)
    assert va.count_parameters(model) == total - (3 * 8 * 9 + 8)
    with pytest.raises(TypeError, match=r"nn\.Module"):
        va.count_parameters("resnet50")  # type: ignore[arg-type]


def test_output_shapes_without_computing() -> None:
    model = _TwoOutputs()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    shapes = va.infer_output_shape(model, (4, 3, 32, 48))
    assert shapes == {"map": (4, 8, 16, 24), "logits": (4, 5)}
    # the real weights and running statistics are untouched
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_output_shape_of_a_catalog_model_at_full_size_is_cheap() -> None:
    model = va.create_model("classification", "resnet50", num_classes=7)
    assert va.infer_output_shape(model, (64, 3, 512, 512)) == (64, 7)
    assert va.infer_output_shape(model, torch.zeros(2, 3, 64, 64)) == (2, 7)


def test_bad_input_shapes_are_explained() -> None:
    model = _TwoOutputs()
    with pytest.raises(ValueError, match="positive"):
        va.infer_output_shape(model, (1, 3, 0, 32))
    with pytest.raises(va.ShapeInferenceError, match="_TwoOutputs"):
        va.infer_output_shape(model, (1, 4, 32, 32))


def test_summary_lists_layers_shapes_and_parameters() -> None:
    model = _TwoOutputs()
    info = va.summary(model, (2, 3, 16, 16))
    names = [layer.name for layer in info.layers]
    assert names == ["conv", "bn", "fc"]
    assert info.layers[0].output_shape == (2, 8, 8, 8)
    assert info.layers[2].num_params == 45
    assert info.total_params == va.count_parameters(model, trainable_only=False)
    text = str(info)
    assert "conv" in text
    assert "[2, 8, 8, 8]" in text
    assert "Total parameters: 285" in text
