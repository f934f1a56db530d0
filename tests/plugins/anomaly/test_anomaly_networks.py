"""Dense extraction equals patch-by-patch evaluation; layer tables and parameter counts."""

from __future__ import annotations

import pytest
import torch

from visionatlas_anomaly.layers import network_params, output_size, receptive_field
from visionatlas_anomaly.networks import PatchNetwork, pad_for_patches, patchwise


@pytest.mark.parametrize("patch_size", [17, 33, 65])
def test_dense_equals_patchwise(patch_size: int) -> None:
    torch.manual_seed(patch_size)
    network = PatchNetwork(patch_size, descriptor_dim=16, width=0.125).eval()
    images = torch.rand(2, 3, 11, 13)
    with torch.no_grad():
        dense = network.dense(images)
        reference = patchwise(network, images)
    assert dense.shape == (2, 16, 11, 13)
    torch.testing.assert_close(dense, reference, atol=1e-4, rtol=0)
    assert dense.abs().mean() > 0  # not trivially zero


@pytest.mark.parametrize("patch_size", [17, 33, 65])
def test_patch_network_maps_one_patch_to_one_descriptor(patch_size: int) -> None:
    network = PatchNetwork(patch_size, descriptor_dim=8, width=0.125)
    out = network(torch.rand(3, 3, patch_size, patch_size))
    assert out.shape == (3, 8)
    assert output_size(patch_size, patch_size) == 1
    assert receptive_field(patch_size) <= patch_size
    with pytest.raises(ValueError, match="patches of shape"):
        network(torch.rand(1, 3, patch_size + 1, patch_size))


def test_paper_tables() -> None:
    # Output sizes of the paper's tables: 65 -> 61 -> 30 -> 26 -> 13 -> 9 -> 4 -> 1 -> 1.
    assert receptive_field(17) == 17
    assert [output_size(p, p) for p in (17, 33, 65)] == [1, 1, 1]
    net = PatchNetwork(65)
    assert [c.out_channels for c in net.convs] == [128, 128, 128, 256, 128]
    assert [c.kernel_size[0] for c in net.convs] == [5, 5, 5, 4, 1]
    assert [c.kernel_size[0] for c in PatchNetwork(33).convs] == [5, 5, 2, 4]
    assert [c.kernel_size[0] for c in PatchNetwork(17).convs] == [6, 5, 5, 4]


@pytest.mark.parametrize("patch_size", [17, 33, 65])
@pytest.mark.parametrize("width", [1.0, 0.5])
def test_params_formula_matches_modules(patch_size: int, width: float) -> None:
    network = PatchNetwork(patch_size, descriptor_dim=128, width=width)
    assert network_params(patch_size, 128, width) == sum(p.numel() for p in network.parameters())


def test_padding_falls_back_for_tiny_images() -> None:
    padded = pad_for_patches(torch.rand(1, 3, 4, 4), 17)
    assert padded.shape == (1, 3, 20, 20)
    with pytest.raises(ValueError, match="unsupported patch size"):
        PatchNetwork(31)


def test_speed_measurement_compares_equal_outputs() -> None:
    from visionatlas_anomaly.speed import measure_dense_speed

    result = measure_dense_speed(17, image_size=20, sampled_pixels=6, repeats=1)
    assert result.max_abs_difference <= 1e-4
    assert result.dense_s > 0
    assert result.patchwise_s > 0
    assert "p=17" in result.row()


def test_speed_measurement_of_a_narrow_network() -> None:
    from visionatlas_anomaly.speed import measure_dense_speed

    result = measure_dense_speed(33, image_size=36, sampled_pixels=4, repeats=1, width=0.25)
    assert result.max_abs_difference <= 1e-4
    assert "width 0.25" in result.row()
    assert "no NNPACK" not in result.row()
    with pytest.raises(ValueError, match="positive channel multiplier"):
        measure_dense_speed(17, width=0.0)


def test_speed_measurement_without_nnpack() -> None:
    from visionatlas_anomaly.speed import measure_dense_speed

    result = measure_dense_speed(
        17, image_size=64, sampled_pixels=4, repeats=1, width=0.0625, nnpack=False
    )
    assert result.max_abs_difference <= 1e-4
    assert not result.nnpack
    assert "dense (no NNPACK)" in result.row()
    with torch.backends.nnpack.flags(enabled=False):  # turned off globally: reported as off
        result = measure_dense_speed(17, image_size=20, sampled_pixels=2, repeats=1, width=0.0625)
    assert not result.nnpack


def test_dense_output_is_contiguous_whatever_the_input_layout() -> None:
    network = PatchNetwork(17, descriptor_dim=8, width=0.25).eval()
    images = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        plain = network.dense(images)
        nhwc = network.dense(images.contiguous(memory_format=torch.channels_last))
    assert plain.is_contiguous()
    assert nhwc.is_contiguous()
    torch.testing.assert_close(plain, nhwc)
