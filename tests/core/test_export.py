"""ONNX export checked in onnxruntime, and ``torch.export`` programs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import Tensor, nn

import visionatlas as va
from visionatlas.export import _check_dynamic_dims, example_images, load_program

ATOL = 1e-4
SIZE = 64


def _run_onnx(path: Path, images: Tensor) -> list[np.ndarray]:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (graph_input,) = session.get_inputs()
    assert graph_input.name == "images"
    return list(session.run(None, {"images": images.numpy()}))


def _calibrated(model: nn.Module) -> nn.Module:
    """Batch-norm statistics from random images, so that outputs depend on the input.

    With their initial statistics some fresh models answer (almost) the same for every
    image, and an export compared on such outputs would prove little.
    """
    generator = torch.Generator().manual_seed(3)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        model.eval()
        for module in norms:
            module.train()
            module.momentum = None
            module.reset_running_stats()
        for _ in range(2):
            model(torch.rand(4, 3, SIZE, SIZE, generator=generator))
        model.eval()
        out = model(torch.rand(2, 3, SIZE, SIZE, generator=generator))
    assert float((out[0] - out[1]).abs().max()) > 1e-2, "outputs do not depend on the input"
    return model


def _expected(model: nn.Module, images: Tensor) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(images).numpy()


@pytest.mark.parametrize(
    ("task", "architecture", "config", "num_classes", "output_shape"),
    [
        ("classification", "resnet18", None, 5, (3, 5)),
        ("regression", "resnet18", {"num_outputs": 2}, None, (3, 2)),
        ("segmentation", "lraspp_mobilenet", None, 4, (3, 4, SIZE, SIZE)),
    ],
    ids=["classification", "regression", "segmentation"],
)
def test_onnx_export_matches_pytorch_in_onnxruntime(
    tmp_path: Path,
    task: str,
    architecture: str,
    config: dict[str, int] | None,
    num_classes: int | None,
    output_shape: tuple[int, ...],
) -> None:
    torch.manual_seed(0)
    model = _calibrated(va.create_model(task, architecture, config, num_classes))
    model.train()  # export switches to eval and restores the mode
    result = va.export_onnx(model, tmp_path / f"{task}.onnx", input_size=SIZE)
    assert model.training
    assert result.path.is_file()
    assert result.input_shape == (2, 3, SIZE, SIZE)
    onnx.checker.check_model(str(result.path))
    # the batch is dynamic: run a batch of 3 although the export example had 2
    images = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(7))
    (got,) = _run_onnx(result.path, images)
    want = _expected(model, images)
    assert got.shape == want.shape == output_shape
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=1e-3)


def test_onnx_export_of_a_composed_model_with_attention_pooling(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _calibrated(va.compose_model("resnet18", "attention_pool", num_outputs=3))
    result = va.export_onnx(model, tmp_path / "composed.onnx", input_size=SIZE, check=True)
    assert result.max_abs_diff is not None
    assert result.max_abs_diff < ATOL
    images = torch.rand(1, 3, SIZE, SIZE)
    (got,) = _run_onnx(result.path, images)
    np.testing.assert_allclose(got, _expected(model, images), atol=ATOL, rtol=1e-3)


def test_static_batch_and_input_size_default(tmp_path: Path) -> None:
    model = va.create_model("classification", "resnet18", num_classes=2)
    assert tuple(example_images(model).shape) == (2, 3, 224, 224)  # the architecture's size
    result = va.export_onnx(
        model, tmp_path / "static.onnx", input_size=(32, 48), dynamic_batch=False
    )
    graph_input = onnx.load(str(result.path)).graph.input[0]
    dims = [d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert dims == [2, 3, 32, 48]


def test_torch_export_program_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _calibrated(va.create_model("classification", "resnet18", num_classes=4))
    program = va.export_program(model, input_size=SIZE, path=tmp_path / "model.pt2")
    images = torch.rand(5, 3, SIZE, SIZE)  # dynamic batch
    with torch.no_grad():
        want = model(images)
        assert torch.allclose(program.module()(images), want, atol=ATOL)
        reloaded = load_program(tmp_path / "model.pt2").module()
        assert torch.allclose(reloaded(images), want, atol=ATOL)


class _ListOfDicts(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, images: Tensor) -> list[dict[str, Tensor]]:
        return [{"boxes": image.mean() * self.scale} for image in images]


def test_unsupported_outputs_raise_export_error(tmp_path: Path) -> None:
    with pytest.raises(va.ExportError, match="detection and anomaly models are not exportable"):
        va.export_onnx(_ListOfDicts(), tmp_path / "x.onnx", input_size=SIZE)
    assert not (tmp_path / "x.onnx").exists()


class _PadsToWindows(nn.Module):
    """Pads its map to a multiple of 7 columns: the computation depends on the width."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, images: Tensor) -> Tensor:
        x = self.conv(images)
        x = nn.functional.pad(x, (0, (7 - x.shape[-1] % 7) % 7))
        return x.reshape(x.shape[0], 4, -1, 7).mean(dim=(2, 3))


def test_size_dependent_models_refuse_dynamic_sizes(tmp_path: Path) -> None:
    model = _PadsToWindows()
    with pytest.raises(va.ExportError, match=r"cannot export the _PadsToWindows to ONNX"):
        va.export_onnx(model, tmp_path / "dynamic.onnx", input_size=(20, 30), dynamic_size=True)
    result = va.export_onnx(model, tmp_path / "fixed.onnx", input_size=(20, 30), check=True)
    assert result.max_abs_diff is not None
    # an exporter that silently fixes a dimension asked to stay free is caught as well
    with pytest.raises(va.ExportError, match=r"fixed H, W of the input to \[20, 30\]"):
        _check_dynamic_dims(result.path, dynamic_batch=True, dynamic_size=True)
