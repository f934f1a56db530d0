"""Semantic segmentation: every architecture trains and predicts; equality with torchvision."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torchvision
from torch import nn

import visionatlas as va
from visionatlas.cli.demo import run_demo
from visionatlas.testing import check_architecture, check_plugin
from visionatlas_segmentation.model import SegmentationModel

TASK = "segmentation"
SPEC_ARCHITECTURES = {
    "fcn_resnet50": "fcn_resnet50",
    "fcn_resnet101": "fcn_resnet101",
    "deeplabv3_resnet50": "deeplabv3_resnet50",
    "deeplabv3_resnet101": "deeplabv3_resnet101",
    "deeplabv3_mobilenet": "deeplabv3_mobilenet_v3_large",
    "lraspp_mobilenet": "lraspp_mobilenet_v3_large",
}
GENERIC_CASES = [
    ("deeplabv3", "resnet18"),
    ("deeplabv3", "mobilenet_v3_small"),
    ("fcn", "resnet18"),
    ("fcn", "mobilenet_v3_small"),
]


def _batch(size: int, num_classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(2, 3, size, size, generator=generator)
    masks = torch.randint(0, num_classes, (2, size, size), generator=generator)
    masks[:, :3] = 255  # a band of ignored pixels, as VOC's borders
    return images, masks


def _train_and_predict(model: nn.Module, size: int, num_classes: int = 3) -> dict[str, float]:
    images, masks = _batch(size, num_classes)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trainable]
    optimizer = torch.optim.SGD(trainable, lr=0.05)
    losses = model(images, masks)
    assert isinstance(losses, dict)
    assert all(torch.isfinite(v) for v in losses.values()), losses
    losses["loss"].backward()
    optimizer.step()
    changed = sum(not torch.equal(a, b.detach()) for a, b in zip(before, trainable, strict=True))
    assert changed > len(trainable) // 2, f"only {changed} of {len(trainable)} tensors changed"
    model.eval()
    with torch.no_grad():
        logits = model(images)
    assert isinstance(logits, torch.Tensor)
    assert logits.shape == (2, num_classes, size, size)
    assert torch.isfinite(logits).all()
    return {k: float(v.detach()) for k, v in losses.items()}


@pytest.mark.parametrize("name", list(SPEC_ARCHITECTURES))
def test_spec_architecture_trains_and_predicts(name: str) -> None:
    torch.manual_seed(0)
    model = va.create_model(TASK, name, num_classes=3)
    assert isinstance(model, SegmentationModel)
    size = 32 if name.endswith("101") else 64
    losses = _train_and_predict(model, size)
    expected = {"loss", "loss_main"} | ({"loss_aux"} if name != "lraspp_mobilenet" else set())
    assert set(losses) == expected
    if "loss_aux" in losses:
        assert losses["loss"] == pytest.approx(losses["loss_main"] + 0.5 * losses["loss_aux"])


@pytest.mark.parametrize(("name", "backbone"), GENERIC_CASES)
def test_generic_architecture_trains_and_predicts(name: str, backbone: str) -> None:
    torch.manual_seed(0)
    model = va.create_model(TASK, name, {"backbone": backbone}, num_classes=4)
    assert model.backbone.name == backbone
    losses = _train_and_predict(model, 64, num_classes=4)
    assert set(losses) == {"loss", "loss_main", "loss_aux"}


@pytest.mark.parametrize(
    "backbone", ["mobilenet_v3_large", "convnext_tiny", "efficientnet_b0", "swin_t"]
)
def test_generic_deeplabv3_on_other_families(backbone: str) -> None:
    model = va.create_model(TASK, "deeplabv3", {"backbone": backbone}, num_classes=5).eval()
    images = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        logits = model(images)
    assert logits.shape == (2, 5, 64, 96)
    assert va.infer_output_shape(model, images) == (2, 5, 64, 96)
    levels = model.backbone.feature_info
    assert model.main_key == levels[-1].name
    assert model.aux_key == levels[-2].name


def _same_weights_reference(name: str, model: nn.Module, **kwargs: Any) -> nn.Module:
    builder = getattr(torchvision.models.segmentation, SPEC_ARCHITECTURES[name])
    reference = builder(weights=None, weights_backbone=None, num_classes=21, **kwargs)
    reference.load_state_dict(model.state_dict())  # strict: the same keys as torchvision's
    return reference.eval()


@pytest.mark.parametrize("name", list(SPEC_ARCHITECTURES))
def test_same_output_as_torchvision_builder(name: str) -> None:
    torch.manual_seed(3)
    model = va.create_model(TASK, name).eval()
    extra = {} if name == "lraspp_mobilenet" else {"aux_loss": True}
    reference = _same_weights_reference(name, model, **extra)
    images = torch.rand(2, 3, 40, 32) if name.endswith("101") else torch.rand(2, 3, 72, 56)
    with torch.no_grad():
        expected = reference(images)
        actual = model(images)
    torch.testing.assert_close(actual, expected["out"], rtol=0, atol=0)


def test_generic_deeplabv3_on_resnet50_at_stride_8_is_torchvision_deeplabv3_resnet50() -> None:
    torch.manual_seed(4)
    reference = torchvision.models.segmentation.deeplabv3_resnet50(
        weights=None, weights_backbone=None, num_classes=21, aux_loss=True
    ).eval()
    model = va.create_model(TASK, "deeplabv3", {"output_stride": 8}).eval()
    model.load_state_dict(reference.state_dict())  # strict: identical structure and keys
    images = torch.rand(1, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(model(images), reference(images)["out"], rtol=0, atol=0)
    assert [lv.stride for lv in model.backbone.feature_info] == [4, 8, 8, 8]


@pytest.mark.parametrize("name", [*SPEC_ARCHITECTURES, "deeplabv3", "fcn"])
def test_num_params_metadata_equals_construction(name: str) -> None:
    spec = va.get_architecture(TASK, name)
    with torch.device("meta"):
        model = va.create_model(TASK, name)
    assert spec.default_num_classes == 21
    assert spec.num_params == sum(p.numel() for p in model.parameters())


def test_torchvision_param_counts_match_their_weights_meta() -> None:
    """With the auxiliary head on by default, counts equal torchvision's published ones."""
    for name, builder in SPEC_ARCHITECTURES.items():
        weights = torchvision.models.get_model_weights(builder).DEFAULT
        assert va.get_architecture(TASK, name).num_params == weights.meta["num_params"]


@pytest.mark.parametrize(
    ("name", "backbone", "atrous_rates"),
    [("deeplabv3", "mobilenet_v3_small", (6, 12, 18, 24)), ("fcn", "convnext_tiny", None)],
)
def test_generic_param_count_formula(
    name: str, backbone: str, atrous_rates: tuple[int, ...] | None
) -> None:
    from visionatlas_segmentation.params import deeplab_head_params, fcn_head_params

    config: dict[str, Any] = {"backbone": backbone}
    if atrous_rates:
        config["atrous_rates"] = atrous_rates
    with torch.device("meta"):
        model = va.create_model(TASK, name, config, num_classes=7)
    levels = model.backbone.feature_info
    if name == "deeplabv3":
        main = deeplab_head_params(levels[-1].channels, 7, len(atrous_rates or ()))
    else:
        main = fcn_head_params(levels[-1].channels, 7)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(model.classifier) == main
    assert count(model.aux_classifier) == fcn_head_params(levels[-2].channels, 7)
    assert count(model.backbone.pre_logits) == 0  # the pooled-vector layers are dropped


def test_catalog_metadata() -> None:
    task = va.get_task(TASK)
    assert task.display_name == "Semantic segmentation"
    assert task.demo_architecture == "lraspp_mobilenet"
    assert set(va.list_architectures(TASK)) == {*SPEC_ARCHITECTURES, "deeplabv3", "fcn"}
    for name in SPEC_ARCHITECTURES:
        spec = va.get_architecture(TASK, name)
        assert spec.pretrained_available
        assert spec.compatible_backbones == (spec.backbone,)
        assert spec.hyperparameters.optimizer == "sgd"
        assert spec.display_name
        assert spec.note
    generic = va.get_architecture(TASK, "deeplabv3")
    multiscale = sorted(b.name for b in va.get_catalog().backbones() if b.multiscale)
    assert list(generic.compatible_backbones) == multiscale
    assert "vit_b_16" not in generic.compatible_backbones
    assert {"resnet18", "convnext_tiny", "swin_t"} <= set(generic.compatible_backbones)
    assert generic.backbone == "resnet50"


def test_compatible_backbones_include_backbones_of_other_plugins() -> None:
    from visionatlas import BackboneSpec, FeatureLevel, hookimpl

    class ExtraBackbones:
        @hookimpl
        def visionatlas_api_version(self) -> int:
            return 1

        @hookimpl
        def visionatlas_register_backbones(self, registrar: va.Registrar) -> None:
            levels = tuple(
                FeatureLevel(name=f"feat{i}", channels=8 * i, stride=2**i) for i in (2, 3)
            )
            registrar.add_backbone(
                BackboneSpec(
                    name="tiny_pyramid",
                    builder="math:floor",
                    family="toy",
                    out_channels=24,
                    pre_logits_dim=24,
                    feature_levels=levels,
                )
            )

    va.register_plugin(ExtraBackbones(), name="extra-backbones")
    assert "tiny_pyramid" in va.get_architecture(TASK, "fcn").compatible_backbones


def test_discovered_through_entry_point() -> None:
    report = check_plugin("segmentation")
    assert report.distribution == "visionatlas-segmentation"
    assert "segmentation" in report.registered["task"]
    assert {f"segmentation/{n}" for n in SPEC_ARCHITECTURES} <= set(
        report.registered["architecture"]
    )


def test_contract_check_and_demo() -> None:
    result = check_architecture(TASK, "lraspp_mobilenet", num_classes=21, input_size=(64, 64))
    assert result.output_shape == (2, 21, 64, 64)
    demo = run_demo(va.get_catalog(), TASK, batch_size=1, size=(64, 64), repeats=1, seed=0)
    assert demo.error is None, demo.error
    assert demo.architecture == "lraspp_mobilenet"
    assert demo.output_tree is not None
