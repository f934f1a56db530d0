"""The operations of dense passes: NNPACK where it applies, the same values as PyTorch's ops."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from visionatlas_anomaly.dense_ops import (
    NNPACK_MIN_PIXELS,
    dense_conv2d,
    dense_max_pool2d,
    uses_nnpack,
)
from visionatlas_anomaly.networks import PatchNetwork, patchwise

needs_nnpack = pytest.mark.skipif(
    not torch.backends.nnpack.is_available(), reason="PyTorch built without NNPACK"
)


def _count_nnpack_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    calls: list[tuple[int, ...]] = []
    original: Callable[..., torch.Tensor] = torch._nnpack_spatial_convolution

    def counting(x: torch.Tensor, *args: Any) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return original(x, *args)

    monkeypatch.setattr(torch, "_nnpack_spatial_convolution", counting)
    return calls


@needs_nnpack
@pytest.mark.parametrize("with_bias", [True, False])
def test_dense_conv_with_nnpack_equals_conv2d(
    monkeypatch: pytest.MonkeyPatch, with_bias: bool
) -> None:
    calls = _count_nnpack_calls(monkeypatch)
    torch.manual_seed(0)
    x = torch.randn(2, 8, 70, 68)
    weight = torch.randn(16, 8, 5, 5)
    bias = torch.randn(16) if with_bias else None
    assert uses_nnpack(x, weight)
    with torch.no_grad():
        out = dense_conv2d(x, weight, bias)
    assert calls == [(1, 8, 70, 68), (1, 8, 70, 68)]  # one single-image call per image
    torch.testing.assert_close(out, F.conv2d(x, weight, bias), atol=1e-4, rtol=0)


@needs_nnpack
def test_nnpack_is_used_only_where_it_applies() -> None:
    weight = torch.randn(16, 8, 5, 5)
    assert NNPACK_MIN_PIXELS == 64 * 64  # the two inputs below straddle it
    large = torch.randn(1, 8, 68, 68)  # 64x64 outputs
    small = torch.randn(1, 8, 67, 68)  # 63x64
    with torch.no_grad():
        assert uses_nnpack(large, weight)
        assert not uses_nnpack(small, weight)  # too few output pixels
        assert not uses_nnpack(large, weight, dilation=2)
        assert not uses_nnpack(large.double(), weight.double())
        with torch.backends.nnpack.flags(enabled=False):
            assert not uses_nnpack(large, weight)
    trainable = weight.clone().requires_grad_()
    assert not uses_nnpack(large, trainable)  # a gradient is needed
    with torch.no_grad():
        assert uses_nnpack(large, trainable)


@pytest.mark.parametrize("dilation", [1, 2, 4])
def test_dense_conv_without_nnpack_equals_conv2d(dilation: int) -> None:
    torch.manual_seed(dilation)
    x = torch.randn(2, 4, 30, 27, requires_grad=True)
    weight = torch.randn(6, 4, 3, 3, requires_grad=True)
    out = dense_conv2d(x, weight, None, dilation)
    expected = F.conv2d(x, weight, dilation=dilation)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, expected)
    # The oneDNN path trains: same gradients as F.conv2d.
    grads = torch.autograd.grad(out.square().sum(), (x, weight))
    expected_grads = torch.autograd.grad(expected.square().sum(), (x, weight))
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dilation", [1, 2, 4])
def test_dense_max_pool_equals_max_pool2d(dilation: int) -> None:
    torch.manual_seed(dilation)
    x = torch.randn(2, 3, 19, 22)
    x[0, 0, :4, :4] = 1.0  # ties
    expected = F.max_pool2d(x, kernel_size=2, stride=1, dilation=dilation)
    assert torch.equal(dense_max_pool2d(x, dilation), expected)
    nhwc = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(dense_max_pool2d(nhwc, dilation), expected)
    trainable = x.clone().requires_grad_()
    pooled = dense_max_pool2d(trainable, dilation)
    assert torch.equal(pooled, expected)
    (grad,) = torch.autograd.grad(pooled.sum(), trainable)
    # As in max_pool2d, each output routes its whole gradient to one input, ties included.
    assert grad.sum() == expected.numel()
    assert torch.equal(grad, grad.round())


@needs_nnpack
@pytest.mark.parametrize("patch_size", [17, 33])
def test_dense_pass_through_nnpack_equals_patchwise(
    monkeypatch: pytest.MonkeyPatch, patch_size: int
) -> None:
    calls = _count_nnpack_calls(monkeypatch)
    torch.manual_seed(patch_size)
    network = PatchNetwork(patch_size, descriptor_dim=8, width=0.0625).eval()
    images = torch.rand(1, 3, 66, 70)
    with torch.no_grad():
        dense = network.dense(images)
        reference = patchwise(network, images, batch_size=1024)
    # p = 17: every convolution is undilated and large; p = 33: only the first one.
    assert len(calls) == (4 if patch_size == 17 else 1)
    torch.testing.assert_close(dense, reference, atol=1e-4, rtol=0)
    assert dense.is_contiguous()
