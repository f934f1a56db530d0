"""ONNX export checked in onnxruntime, and ``torch.export`` programs."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import Tensor, nn

import visionatlas as va
from visionatlas.lifecycle.export import UnsafeProgramError, example_images, load_program
from visionatlas.lifecycle.onnx_export import (
    DEFAULT_OPSET,
    _check_dynamic_dims,
    supported_opsets,
)

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


# -- ONNX opsets -------------------------------------------------------------------------------


class _Tiny(nn.Module):
    """Convolution, ReLU, mean and linear layers: small, and exported in about a second."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.linear = nn.Linear(4, 2)

    def forward(self, images: Tensor) -> Tensor:
        return self.linear(torch.relu(self.conv(images)).mean(dim=(2, 3)))


def _file_opset(path: Path) -> int:
    return {o.domain: o.version for o in onnx.load(str(path)).opset_import}[""]


def test_supported_opsets_come_from_the_installed_exporter() -> None:
    from torch.onnx._constants import ONNX_MIN_OPSET

    assert supported_opsets() == (ONNX_MIN_OPSET, onnx.defs.onnx_opset_version())


@pytest.mark.parametrize("offset", ["1", "below", "above", "999"])
def test_opsets_outside_the_supported_range_are_refused(tmp_path: Path, offset: str) -> None:
    lowest, highest = supported_opsets()
    opset = {"1": 1, "below": lowest - 1, "above": highest + 1, "999": 999}[offset]
    target = tmp_path / "refused.onnx"
    with pytest.raises(ValueError, match=rf"opset must be an int from {lowest} to {highest}"):
        va.export_onnx(_Tiny(), target, input_size=16, opset=opset)
    assert not target.exists()


@pytest.mark.parametrize("opset", [DEFAULT_OPSET, 20])
def test_the_result_reports_the_opset_of_the_file(tmp_path: Path, opset: int) -> None:
    result = va.export_onnx(_Tiny(), tmp_path / "tiny.onnx", input_size=16, opset=opset)
    assert result.opset == _file_opset(result.path) == opset
    assert result.as_dict()["opset"] == opset


def test_an_opset_the_converter_cannot_reach_is_an_error(tmp_path: Path) -> None:
    lowest, _ = supported_opsets()  # the exporter writes 18; onnx cannot take ReLU below 14
    target = tmp_path / "old.onnx"
    with pytest.raises(
        va.ExportError,
        match=rf"could not convert the model to ONNX opset {lowest}: .*old\.onnx has opset "
        rf"{DEFAULT_OPSET}",
    ):
        va.export_onnx(_Tiny(), target, input_size=16, opset=lowest)
    assert not target.exists()


# -- load_program runs no code from the file ---------------------------------------------------


class _TouchesMarker:
    """Unpickling it creates ``marker``: the code a crafted file would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (str(self.marker), "w")


def _torch_pickle(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save(_TouchesMarker(marker), buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tiny_program(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Module]:
    """A program saved by ``export_program`` (dynamic batch), and its model."""
    torch.manual_seed(0)
    model = _Tiny().eval()
    path = tmp_path_factory.mktemp("program") / "tiny.pt2"
    va.export_program(model, input_size=16, path=path)
    return path, model


def _rewrite(
    source: Path,
    target: Path,
    *,
    replace: dict[str, bytes] | None = None,
    add: dict[str, bytes] | None = None,
    edit: Callable[[str, Any], None] | None = None,
) -> None:
    """Copy the archive ``source`` member by member, changed as a hostile editor would."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        root = old.namelist()[0].split("/")[0]
        for info in old.infolist():
            name = info.filename.split("/", 1)[1]
            data = old.read(info)
            if edit is not None and name.endswith(".json"):
                document = json.loads(data)
                edit(name, document)
                data = json.dumps(document).encode()
            new.writestr(info, (replace or {}).get(name, data))
        for name, data in (add or {}).items():
            new.writestr(f"{root}/{name}", data)


def _set_all(document: Any, key: str, value: Any) -> None:
    if isinstance(document, dict):
        for name, item in document.items():
            if name == key:
                document[name] = value
            else:
                _set_all(item, key, value)
    elif isinstance(document, list):
        for item in document:
            _set_all(item, key, value)


def _pickled_weight(source: Path, target: Path, marker: Path) -> None:
    def edit(name: str, document: Any) -> None:
        if name.endswith("_weights_config.json"):
            next(iter(document["config"].values()))["use_pickle"] = True

    _rewrite(source, target, edit=edit, replace={"data/weights/weight_0": _torch_pickle(marker)})


def _opaque_constant(source: Path, target: Path, marker: Path) -> None:
    def edit(name: str, document: Any) -> None:
        if name.endswith("_constants_config.json"):
            document["config"]["evil"] = {
                "path_name": "opaque_obj_0", "is_param": False, "use_pickle": True,
                "tensor_meta": None,
            }  # fmt: skip

    _rewrite(
        source,
        target,
        edit=edit,
        add={"data/constants/opaque_obj_0": pickle.dumps(_TouchesMarker(marker))},
    )


def _shape_expression(source: Path, target: Path, marker: Path) -> None:
    payload = f"Symbol(open({str(marker)!r}, 'w') and 's77', positive=True, integer=True)"
    _rewrite(
        source,
        target,
        edit=lambda name, document: _set_all(document, "expr_str", payload),
    )


def _guard(source: Path, target: Path, marker: Path) -> None:
    def edit(name: str, document: Any) -> None:
        if name.startswith("models/"):
            document["guards_code"] = [f"open({str(marker)!r}, 'w') is not None"]

    _rewrite(source, target, edit=edit)


def _argument_name(source: Path, target: Path, marker: Path) -> None:
    names = [f"images, marker=open({str(marker)!r}, 'w')"]
    _rewrite(
        source,
        target,
        edit=lambda name, document: _set_all(document, "forward_arg_names", names),
    )


CRAFTED: dict[str, tuple[Callable[[Path, Path, Path], None], str]] = {
    "pickled example inputs": (
        lambda source, target, marker: _rewrite(
            source, target, replace={"data/sample_inputs/model.pt": _torch_pickle(marker)}
        ),
        r"the example inputs\) holds objects that only a full unpickler loads",
    ),
    "pickled weight": (_pickled_weight, r"weights entry '.*' is stored with pickle"),
    "opaque constant": (_opaque_constant, r"opaque_obj_0' is a pickled object"),
    "legacy pickled weights": (
        lambda source, target, marker: _rewrite(
            source, target, add={"data/weights/model.pt": _torch_pickle(marker)}
        ),
        r"model\.pt' is a pickled object",
    ),
    "AOTInductor library": (
        lambda source, target, marker: _rewrite(
            source, target, add={"data/aotinductor/model/model.so": b"\x7fELF"}
        ),
        r"is AOTInductor compiled code",
    ),
    "shape expression": (_shape_expression, r"expr_str .* is not a shape expression: it uses"),
    "guard": (_guard, r"guards_code .* is not a guard: it uses"),
    "argument name": (_argument_name, r"forward_arg_names .* is not an argument name"),
    "quote in a name": (  # names become attribute paths in the code that .module() runs
        lambda source, target, marker: _rewrite(
            source,
            target,
            edit=lambda name, document: _set_all(
                document, "parameter_name", f'linear.weight"); open({str(marker)!r}, "w'
            ),
        ),
        r"parameter_name .* holds quotes, backslashes or control characters",
    ),
}


def _load_and_run(path: Path) -> Tensor:
    """Load, then run: guards and generated code (names, attributes) run only here."""
    with torch.no_grad():
        return load_program(path).module()(torch.rand(2, 3, 16, 16))


@pytest.mark.parametrize("case", list(CRAFTED))
def test_load_program_refuses_a_crafted_file_and_runs_nothing(
    tiny_program: tuple[Path, nn.Module], tmp_path: Path, case: str
) -> None:
    craft, reason = CRAFTED[case]
    marker = tmp_path / "marker"
    crafted = tmp_path / "crafted.pt2"
    craft(tiny_program[0], crafted, marker)
    with pytest.raises(UnsafeProgramError, match=reason) as info:
        _load_and_run(crafted)
    assert not marker.exists()
    error = info.value
    assert isinstance(error, va.VisionAtlasError)
    assert error.path == crafted
    assert str(error).startswith(f"refused to load {crafted}: ")
    assert "loads only programs that need no pickle and no code from the file" in str(error)


def test_load_program_loads_and_runs_what_export_program_wrote(
    tiny_program: tuple[Path, nn.Module], tmp_path: Path
) -> None:
    path, model = tiny_program
    copy = tmp_path / "copy.pt2"
    _rewrite(path, copy)  # the crafting above changes nothing else
    images = torch.rand(3, 3, 16, 16)  # the batch is dynamic
    with torch.no_grad():
        want = model(images)
        for file in (path, copy):
            assert torch.allclose(load_program(file).module()(images), want, atol=1e-6)


def test_load_program_names_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(va.ExportError, match=r"cannot read the program .*missing\.pt2"):
        load_program(tmp_path / "missing.pt2")
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"not a zip archive")
    with pytest.raises(UnsafeProgramError, match=r"junk\.pt2: it is not a zip archive"):
        load_program(junk)
