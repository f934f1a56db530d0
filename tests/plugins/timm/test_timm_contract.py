"""The contract kit over a sample of timm backbones from every kind of family.

Each is built with random weights and checked on a real forward pass by
``visionatlas.testing.check_backbone``: levels (names, channels, strides), pre-logits
width, parameter count against the manifest, freezing by stage, and ``num_classes``.
"""

from __future__ import annotations

import pytest
import torch

from visionatlas.testing import check_backbone

CNNS = [
    "resnet18d", "seresnet18", "resnext26ts", "regnetx_002", "regnety_002", "dla34",
    "densenet121", "cspresnet50", "darknet17", "res2net50_14w_8s", "resnest14d", "dpn48b",
    "vovnet39a", "hrnet_w18_small", "repvgg_a0", "resnet26t", "xception41", "selecsls42",
]  # fmt: skip
MOBILE = [
    "efficientnet_b0", "efficientnet_lite0", "efficientnetv2_rw_t", "mobilenetv3_small_050",
    "mobilenetv2_050", "mnasnet_small", "ghostnet_050", "rexnet_100", "tinynet_e",
    "lcnet_050", "mixnet_s", "hardcorenas_a", "repvit_m1", "hgnetv2_b0", "fastvit_t8",
]  # fmt: skip
CONVNEXT_AND_METAFORMERS = [
    "convnext_atto", "convnextv2_atto", "poolformer_s12", "mambaout_femto", "starnet_s1",
    "inception_next_tiny", "edgenext_xx_small",
]  # fmt: skip
TRANSFORMERS = [
    "vit_tiny_patch16_224", "deit_tiny_patch16_224", "eva02_tiny_patch14_224",
    "xcit_nano_12_p16_224", "swin_tiny_patch4_window7_224", "pit_ti_224", "levit_128s",
    "pvt_v2_b0", "twins_pcpvt_small", "mixer_s32_224",
]  # fmt: skip
HYBRIDS = [
    "maxvit_nano_rw_256", "coatnet_nano_rw_224", "coat_lite_tiny", "efficientformerv2_s0",
    "mobilevit_xxs", "mobilevitv2_050", "efficientvit_b0", "tiny_vit_5m_224", "davit_tiny",
]  # fmt: skip
SAMPLE = CNNS + MOBILE + CONVNEXT_AND_METAFORMERS + TRANSFORMERS + HYBRIDS


@pytest.fixture(autouse=True)
def _one_thread() -> object:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many tiny kernels: one thread is faster on a loaded machine
    yield
    torch.set_num_threads(threads)


def test_the_sample_covers_every_kind_of_family() -> None:
    assert len(set(SAMPLE)) == len(SAMPLE) >= 40


@pytest.mark.parametrize("name", SAMPLE)
def test_timm_backbone_honours_the_backbone_contract(name: str) -> None:
    result = check_backbone(f"timm/{name}")
    assert result.num_stages == len(result.feature_levels) + 1
