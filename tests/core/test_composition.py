"""Composing any backbone with any head by name, the reusable heads, and ``reset_head``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

import visionatlas as va
from visionatlas.models.composition import BackboneHeadModel, head_input_kind, is_composed
from visionatlas.models.heads.mlp import MLPHead
from visionatlas.models.heads.pooling import AttentionPoolHead, GeMHead

SMALL = (2, 3, 64, 64)
NEW_HEADS = ("linear", "mlp", "gem", "attention_pool")


def _head_params(model: BackboneHeadModel) -> int:
    return sum(p.numel() for p in model.head.parameters())


@pytest.mark.parametrize("head", NEW_HEADS)
def test_compose_any_backbone_with_a_new_head_by_name(head: str) -> None:
    torch.manual_seed(0)
    model = va.compose_model("mobilenet_v3_small", head, num_outputs=5)
    spec = va.get_catalog().get_head(head)
    assert spec.provider is not None
    assert spec.provider.name == "builtin-heads"
    # pooling heads get the final map (576 channels); the others the 1024-wide pre-logits
    backbone = model.backbone
    in_features = (
        backbone.out_channels if model.head_input == "feature_map" else backbone.pre_logits_dim
    )
    assert backbone.out_channels == 576
    assert backbone.pre_logits_dim == 1024
    assert spec.count_params is not None
    assert _head_params(model) == spec.count_params(in_features, 5)
    images = torch.rand(*SMALL)
    out = model(images)
    assert out.shape == (2, 5)
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.head.parameters() if p.requires_grad)
    info = model.visionatlas_info
    assert is_composed(info)
    assert (info.task, info.architecture, info.num_classes) == (
        "custom",
        f"mobilenet_v3_small+{head}",
        5,
    )
    assert info.config["head"] == head


def test_pooling_heads_consume_the_feature_map() -> None:
    assert head_input_kind(GeMHead) == "feature_map"
    assert head_input_kind(AttentionPoolHead) == "feature_map"
    assert head_input_kind(MLPHead) == "pooled"
    model = va.compose_model("resnet18", "gem", num_outputs=3).eval()
    images = torch.rand(*SMALL)
    with torch.no_grad():
        expected = model.head(model.backbone(images))
        assert torch.equal(model(images), expected)


def test_gem_generalizes_average_and_max_pooling() -> None:
    x = torch.rand(2, 4, 5, 6) + 0.1
    average = GeMHead(in_features=4, num_outputs=1, p=1.0).pool(x)
    assert torch.allclose(average, x.mean(dim=(2, 3)), atol=1e-6)
    # the power mean grows with p, from the mean towards the max
    cubic = GeMHead(in_features=4, num_outputs=1, p=3.0).pool(x)
    high = GeMHead(in_features=4, num_outputs=1, p=64.0).pool(x)
    maximum = x.amax(dim=(2, 3))
    assert bool((average < cubic).all() and (cubic < high).all() and (high <= maximum).all())
    assert bool((high > 0.9 * maximum).all())
    learned = GeMHead(in_features=4, num_outputs=2)
    assert learned.p.requires_grad
    assert learned.p.item() == 3.0
    assert not GeMHead(in_features=4, num_outputs=2, learn_p=False).p.requires_grad
    with pytest.raises(ValueError, match=r"p > 0"):
        GeMHead(in_features=4, num_outputs=2, p=0.0)


def test_attention_pool_is_input_size_independent_and_checks_heads() -> None:
    head = AttentionPoolHead(in_features=12, num_outputs=3).eval()
    assert head.attention.num_heads == 4  # the largest of 8, 4, 2, 1 dividing 12
    for size in ((3, 3), (5, 7)):
        assert head(torch.rand(2, 12, *size)).shape == (2, 3)
    # permuting positions does not change the result: it pools, it does not read order
    x = torch.rand(1, 12, 2, 3)
    flipped = x.flip(-1)
    assert torch.allclose(head(x), head(flipped), atol=1e-6)
    with pytest.raises(ValueError, match=r"num_heads >= 1 dividing in_features=12"):
        AttentionPoolHead(in_features=12, num_outputs=3, num_heads=5)


def test_mlp_head_options_are_checked_against_the_builder() -> None:
    model = va.compose_model(
        "resnet18",
        "mlp",
        num_outputs=4,
        head_options={"hidden_features": [64, 32], "activation": "relu", "norm": "batch"},
    )
    head = model.head
    assert isinstance(head, MLPHead)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 64), (64, 32), (32, 4)]
    assert any(isinstance(m, nn.BatchNorm1d) for m in head.modules())
    assert model.visionatlas_info.config["head_options"]["hidden_features"] == [64, 32]
    with pytest.raises(ValueError, match=r"no option\(s\) 'hiden'.*accepts: activation, hidden"):
        va.compose_model("resnet18", "mlp", num_outputs=4, head_options={"hiden": [8]})
    with pytest.raises(ValueError, match=r"set by the composition"):
        va.compose_model("resnet18", "mlp", num_outputs=4, head_options={"in_features": 3})
    with pytest.raises(ValueError, match=r"unknown activation 'tanh'.*accepted: relu, gelu"):
        va.compose_model("resnet18", "mlp", num_outputs=4, head_options={"activation": "tanh"})


def test_compose_model_validates_names_and_values() -> None:
    with pytest.raises(va.UnknownHeadError, match=r"did you mean 'gem'"):
        va.compose_model("resnet18", "gme", num_outputs=2)
    with pytest.raises(va.UnknownBackboneError, match=r"did you mean 'resnet18'"):
        va.compose_model("resnet81", "linear", num_outputs=2)
    with pytest.raises(ValueError, match=r"num_classes"):
        va.compose_model("resnet18", "linear", num_outputs=0)
    with pytest.raises(ValueError, match=r"conflicts"):
        va.compose_model(va.BackboneConfig(model_name="resnet18"), num_outputs=2, pretrained=True)


def test_compose_model_accepts_backbone_configs_and_freezing() -> None:
    model = va.compose_model(
        {"model_name": "resnet18", "extra_kwargs": {"zero_init_residual": True}},
        "gem",
        num_outputs=2,
        freeze_backbone=True,
    )
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in model.head.parameters()}
    assert model.visionatlas_info.config["backbone"]["extra_kwargs"] == {"zero_init_residual": True}
    assert model.visionatlas_info.config["freeze_backbone"] is True


def test_catalog_architectures_take_the_new_heads_through_their_config() -> None:
    model = va.create_model("classification", "resnet18", {"head": "attention_pool"}, 7)
    assert isinstance(model, BackboneHeadModel)
    assert model.head_name == "attention_pool"
    assert model.head_input == "feature_map"
    assert model(torch.rand(*SMALL)).shape == (2, 7)


def test_reset_head_updates_the_build_info() -> None:
    model = va.create_model("classification", "resnet18", num_classes=10)
    model.reset_head(3, head="gem", dropout=0.2)
    info = model.visionatlas_info
    assert (info.num_classes, info.config["head"], info.config["dropout"]) == (3, "gem", 0.2)
    assert model(torch.rand(*SMALL)).shape == (2, 3)
    rebuilt = va.rebuild_model(info)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }
    with pytest.raises(ValueError, match=r"records no head options"):
        model.reset_head(3, head="mlp", head_options={"hidden_features": [8]})


def test_reset_head_keeps_regression_num_outputs_in_step() -> None:
    model = va.create_model("regression", "resnet18", {"num_outputs": 2})
    model.reset_head(4)
    info = model.visionatlas_info
    assert (info.num_classes, info.config["num_outputs"]) == (4, 4)
    assert va.rebuild_model(info)(torch.rand(*SMALL)).shape == (2, 4)


def test_reset_head_of_a_composed_model_keeps_or_replaces_options() -> None:
    model = va.compose_model(
        "resnet18", "mlp", num_outputs=2, head_options={"hidden_features": [8]}
    )
    model.reset_head(6)
    assert model.visionatlas_info.config["head_options"] == {"hidden_features": [8]}
    assert model.head.hidden[1].out_features == 8
    model.reset_head(5, head="gem")
    info = model.visionatlas_info
    assert (info.architecture, info.num_classes, info.config["head_options"]) == (
        "resnet18+gem",
        5,
        {},
    )
    assert model.head_input == "feature_map"
    assert va.rebuild_model(info)(torch.rand(*SMALL)).shape == (2, 5)


def test_builtin_heads_plugin_imports_no_torch() -> None:
    code = (
        "import json, sys\n"
        "import visionatlas.models.heads.builtin as b\n"
        "import visionatlas as va\n"
        "heads = va.list_heads()\n"
        "print(json.dumps({'heads': heads, 'heavy': sorted(m for m in ('torch', 'pydantic') "
        "if m in sys.modules)}))\n"
    )
    env = {**os.environ, "VISIONATLAS_DISABLE_PLUGIN_AUTOLOAD": "1"}  # the built-ins alone
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=env,
    )
    result = json.loads(out.stdout)
    assert result["heads"] == sorted(NEW_HEADS)
    assert result["heavy"] == []
