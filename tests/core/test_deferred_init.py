"""Deferred initialisation: placeholders, what loading makes of them, fallbacks, threads."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
import torch
from torch import nn

import visionatlas as va
from visionatlas.errors import PretrainedWeightsError
from visionatlas.models.deferred_init import (
    construct_and_load,
    deferred_init,
    eager_loading,
    initialise_placeholders,
    placeholders,
    taking_weights,
)

FALLBACK = "construct_and_load: initialising, then loading"


class WithBuffers(nn.Module):
    """Parameters, a persistent buffer and a non-persistent buffer computed in ``__init__``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.scale = nn.Parameter(torch.randn(4))
        self.register_buffer("index", torch.arange(4) * 3, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.conv(x)) * self.scale[:, None, None]
        return y + self.index.float()[:, None, None]


def _trained_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    model = WithBuffers()
    model.norm.running_mean.uniform_()
    return model.state_dict()


def test_parameters_are_placeholders_and_buffers_stay_real() -> None:
    with deferred_init():
        model = WithBuffers()
    assert set(placeholders(model)) == {
        "conv.weight",
        "conv.bias",
        "norm.weight",
        "norm.bias",
        "scale",
    }
    assert torch.equal(model.index, torch.arange(4) * 3)
    assert model.norm.running_var.device.type == "cpu"
    outside = nn.Linear(2, 2)  # after the block: torch's own behaviour
    assert not outside.weight.is_meta


def test_construct_and_load_equals_the_ordinary_path(caplog: pytest.LogCaptureFixture) -> None:
    state = _trained_state()
    caplog.set_level(logging.DEBUG, logger="visionatlas.models.deferred_init")
    fast = construct_and_load(WithBuffers, lambda m: m.load_state_dict(state))
    assert FALLBACK not in caplog.text
    with eager_loading():
        ordinary = construct_and_load(WithBuffers, lambda m: m.load_state_dict(state))
    x = torch.randn(2, 3, 8, 8)
    assert placeholders(fast) == []
    assert torch.equal(fast.eval()(x), ordinary.eval()(x))
    assert torch.equal(fast.index, torch.arange(4) * 3)  # the non-persistent buffer survived
    assert [type(p) for p in fast.parameters()] == [nn.Parameter] * 5
    assert all(p.requires_grad for p in fast.parameters())


def test_loaded_tensors_are_copied_unless_taken() -> None:
    state = _trained_state()
    copied = construct_and_load(WithBuffers, lambda m: m.load_state_dict(state))
    assert copied.scale.data_ptr() != state["scale"].data_ptr()
    state["scale"].add_(1)
    assert not torch.equal(copied.scale, state["scale"])

    fresh = _trained_state()

    def take(model: nn.Module) -> None:
        with taking_weights():
            model.load_state_dict(fresh)

    taken = construct_and_load(WithBuffers, take)
    assert taken.scale.data_ptr() == fresh["scale"].data_ptr()


def test_dtype_and_layout_follow_the_model_not_the_file() -> None:
    state = {k: v.half() if v.is_floating_point() else v for k, v in _trained_state().items()}
    state["conv.weight"] = state["conv.weight"].contiguous(memory_format=torch.channels_last)
    with taking_weights():
        model = construct_and_load(WithBuffers, lambda m: m.load_state_dict(state))
    assert model.conv.weight.dtype == torch.float32
    assert model.conv.weight.is_contiguous()
    assert torch.equal(model.conv.weight, state["conv.weight"].float())


def test_missing_key_is_an_error_and_no_placeholder_escapes() -> None:
    state = _trained_state()
    del state["conv.weight"]
    with pytest.raises(RuntimeError, match=r"Missing key\(s\).*conv\.weight"):
        construct_and_load(WithBuffers, lambda m: m.load_state_dict(state))


def test_extra_key_is_an_error() -> None:
    state = {**_trained_state(), "conv.extra": torch.zeros(1)}
    with pytest.raises(RuntimeError, match=r"Unexpected key\(s\).*conv\.extra"):
        construct_and_load(WithBuffers, lambda m: m.load_state_dict(state))


def test_uncovered_parameters_fall_back_to_the_ordinary_path(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = {k: v for k, v in _trained_state().items() if not k.startswith("conv.")}
    caplog.set_level(logging.DEBUG, logger="visionatlas.models.deferred_init")
    torch.manual_seed(3)
    model = construct_and_load(WithBuffers, lambda m: m.load_state_dict(state, strict=False))
    assert "uncovered" in caplog.text
    assert placeholders(model) == []
    torch.manual_seed(3)
    assert torch.equal(model.conv.weight, WithBuffers().conv.weight)  # initialised as usual
    assert torch.equal(model.scale, state["scale"])


class ComputesOnParameters(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 3)
        self.register_buffer("norm", self.linear.weight.detach().norm().reshape(1))


def test_a_constructor_that_computes_on_parameters_still_gets_right_buffers() -> None:
    torch.manual_seed(0)
    source = ComputesOnParameters()
    state = {k: v for k, v in source.state_dict().items()}
    model = construct_and_load(ComputesOnParameters, lambda m: m.load_state_dict(state))
    assert placeholders(model) == []
    assert torch.equal(model.norm, source.norm)


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(2, 2, bias=False)
        self.b = nn.Linear(2, 2, bias=False)
        self.b.weight = self.a.weight


def test_tied_parameters_stay_tied() -> None:
    state = Tied().state_dict()
    model = construct_and_load(Tied, lambda m: m.load_state_dict(state))
    assert model.a.weight is model.b.weight
    assert torch.equal(model.a.weight, state["a.weight"])


def test_initialise_placeholders_uses_the_layers_defaults() -> None:
    with deferred_init():
        model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    names = initialise_placeholders(model)
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert placeholders(model) == []
    assert torch.equal(model[1].weight, torch.ones(4))
    with deferred_init():
        custom = WithBuffers()
    with pytest.raises(TypeError, match="no reset_parameters"):
        initialise_placeholders(custom)


def test_deferral_is_per_thread() -> None:
    inside, release = threading.Event(), threading.Event()
    built: dict[str, nn.Module] = {}

    def deferring() -> None:
        with deferred_init():
            inside.set()
            release.wait(10)
            built["deferred"] = nn.Linear(4, 4)

    worker = threading.Thread(target=deferring)
    worker.start()
    assert inside.wait(10)
    built["plain"] = nn.Linear(4, 4)  # while the other thread is inside deferred_init
    release.set()
    worker.join()
    assert not built["plain"].weight.is_meta
    assert built["deferred"].weight.is_meta


def test_pretrained_build_with_a_wrong_file_names_the_keys(tmp_path: Path) -> None:
    import torchvision

    state = torchvision.models.resnet18().state_dict()
    state.pop("layer4.1.bn2.weight")
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    config = {"pretrained": True, "weights_path": str(path)}
    with pytest.raises(PretrainedWeightsError, match=r"missing keys: layer4\.1\.bn2\.weight"):
        va.create_model("classification", "resnet18", config)
