"""Export image models to ONNX (checked with onnxruntime) and to ``torch.export`` programs.

Both take models whose input is one image batch ``(N, 3, H, W)`` and whose output is a
tensor (classification, regression, segmentation logits) or a tuple/dict of tensors.
Detection and anomaly models (lists of images in, lists of dicts out) are out of scope.
The ONNX path uses PyTorch's ``torch.export``-based exporter (it needs ``onnx`` and
``onnxscript``: ``pip install 'visionatlas[export]'``); ``check=True`` also needs
``onnxruntime``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionatlas.errors import VisionAtlasError
from visionatlas.lifecycle.rebuild import build_info_of

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from visionatlas.lifecycle.onnx_export import (
        DEFAULT_OPSET,
        INPUT_NAME,
        check_onnx,
        compare_onnx,
        export_onnx,
        supported_opsets,
    )

__all__ = [
    "DEFAULT_OPSET",
    "INPUT_NAME",
    "ExportError",
    "ExportMismatchError",
    "ExportResult",
    "UnsafeProgramError",
    "check_onnx",
    "compare_onnx",
    "example_images",
    "export_onnx",
    "export_program",
    "load_program",
    "supported_opsets",
]

_LAZY = dict.fromkeys(
    [
        "DEFAULT_OPSET",
        "INPUT_NAME",
        "check_onnx",
        "compare_onnx",
        "export_onnx",
        "supported_opsets",
    ],
    "visionatlas.lifecycle.onnx_export",
)
"""The ONNX side lives in :mod:`visionatlas.lifecycle.onnx_export`; its public names are
also found here, imported on first use (that module builds on this one)."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


class ExportError(VisionAtlasError, RuntimeError):
    """A model could not be exported, or the exported file disagrees with PyTorch."""


class ExportMismatchError(ExportError):
    """The exported file runs, but its outputs differ from PyTorch's beyond the tolerance."""

    def __init__(self, message: str, *, max_abs_diff: float) -> None:
        self.max_abs_diff = max_abs_diff
        super().__init__(message)


class UnsafeProgramError(ExportError):
    """A ``.pt2`` file that :func:`load_program` refuses: loading it could run code from it."""

    def __init__(self, message: str, *, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_onnx` wrote and, with ``check=True``, how closely it matches.

    ``opset`` is the ONNX opset read back from the written file.
    """

    path: Path
    input_shape: tuple[int, ...]
    output_names: tuple[str, ...]
    output_shapes: tuple[tuple[int, ...], ...]
    dynamic_batch: bool
    dynamic_size: bool
    opset: int
    max_abs_diff: float | None = None
    files: tuple[Path, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "input_shape": list(self.input_shape),
            "output_names": list(self.output_names),
            "output_shapes": [list(s) for s in self.output_shapes],
            "dynamic_batch": self.dynamic_batch,
            "dynamic_size": self.dynamic_size,
            "opset": self.opset,
            "max_abs_diff": self.max_abs_diff,
            "files": [str(f) for f in self.files],
        }


def _size(input_size: int | Sequence[int] | None, model: nn.Module) -> tuple[int, int]:
    if input_size is None:
        info = build_info_of(model)
        if info is not None:
            from visionatlas.catalog import get_catalog
            from visionatlas.errors import UnknownNameError

            with contextlib.suppress(UnknownNameError):
                h, w = (
                    get_catalog()
                    .get_architecture(info.task, info.architecture)
                    .hyperparameters.input_size
                )
                return int(h), int(w)
        return 224, 224
    if isinstance(input_size, int):
        return input_size, input_size
    dims = tuple(int(d) for d in input_size)
    if len(dims) != 2 or min(dims) < 1:
        raise ValueError(f"input_size must be an int or (height, width), got {input_size!r}")
    return dims[0], dims[1]


def example_images(
    model: nn.Module, *, input_size: int | Sequence[int] | None = None, batch_size: int = 2
) -> Tensor:
    """A seeded random batch ``(batch_size, 3, H, W)`` in [0, 1] on the model's device.

    ``input_size`` defaults to the architecture's default input size (224 otherwise).
    """
    import torch

    height, width = _size(input_size, model)
    parameter = next(iter(model.parameters()), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    generator = torch.Generator().manual_seed(0)
    return torch.rand(batch_size, 3, height, width, generator=generator).to(device)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, training in modes.items():
            module.train(training)


def flatten_outputs(outputs: Any) -> tuple[tuple[str, ...], list[Tensor]]:
    import torch

    if isinstance(outputs, torch.Tensor):
        return ("output",), [outputs]
    if isinstance(outputs, Mapping) and all(isinstance(v, torch.Tensor) for v in outputs.values()):
        return tuple(str(k) for k in outputs), list(outputs.values())
    if isinstance(outputs, (tuple, list)) and all(isinstance(v, torch.Tensor) for v in outputs):
        return tuple(f"output{i}" for i in range(len(outputs))), list(outputs)
    raise ExportError(
        f"the model returns a {type(outputs).__name__}; export handles a tensor, or a "
        "tuple/list/dict of tensors (detection and anomaly models are not exportable here)"
    )


def dynamic_shapes(dynamic_batch: bool, dynamic_size: bool) -> tuple[dict[int, Any]] | None:
    import torch

    dims: dict[int, Any] = {}
    if dynamic_batch:
        dims[0] = torch.export.Dim("batch", min=1, max=4096)
    if dynamic_size:
        dims[2] = torch.export.Dim("height", min=32, max=8192)
        dims[3] = torch.export.Dim("width", min=32, max=8192)
    return (dims,) if dims else None


def export_program(
    model: nn.Module,
    *,
    input_size: int | Sequence[int] | None = None,
    dynamic_batch: bool = True,
    dynamic_size: bool = False,
    path: str | os.PathLike[str] | None = None,
) -> torch.export.ExportedProgram:
    """Capture ``model`` (in eval mode) with :func:`torch.export.export`.

    With ``path`` the program is also saved with :func:`torch.export.save` (a ``.pt2``
    file; load it with :func:`load_program`).
    """
    import torch

    images = example_images(model, input_size=input_size)
    with eval_mode(model), torch.no_grad():
        try:
            program = torch.export.export(
                model, (images,), dynamic_shapes=dynamic_shapes(dynamic_batch, dynamic_size)
            )
        except Exception as err:
            raise ExportError(
                f"torch.export cannot capture the {type(model).__name__}: "
                f"{type(err).__name__}: {first_line(err)}"
            ) from err
    if path is not None:
        target = Path(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.export.save(program, target)
        except OSError as err:
            raise ExportError(
                f"cannot write {target}: {err.strerror or err}; give a file path in a "
                "directory you can write to"
            ) from err
    return program


def load_program(path: str | os.PathLike[str]) -> torch.export.ExportedProgram:
    """Load a program saved by :func:`export_program` (call ``.module()`` to run it).

    The file is read once and checked before :func:`torch.export.load` sees it: a program
    whose loading or running would execute code from the file (pickled members, compiled
    AOTInductor code, shape expressions or guards that are not plain arithmetic) raises
    :class:`UnsafeProgramError` and nothing in it runs.
    """
    import io

    import torch

    from visionatlas.lifecycle._pt2check import Refused, check_archive

    source = Path(path)
    try:
        data = source.read_bytes()
    except OSError as err:
        raise ExportError(f"cannot read the program {source}: {err.strerror or err}") from err
    try:
        check_archive(data)
    except Refused as err:
        raise UnsafeProgramError(
            f"refused to load {source}: {err}; load_program loads only programs that need no "
            "pickle and no code from the file, as export_program writes them",
            path=source,
            reason=str(err),
        ) from err
    try:
        return torch.export.load(io.BytesIO(data))
    except Exception as err:
        raise ExportError(
            f"{source} is not a loadable torch.export program: {type(err).__name__}: "
            f"{first_line(err)}"
        ) from err


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def first_line(err: BaseException) -> str:
    """The first line of ``err``'s message, without terminal colour codes."""
    text = _ANSI.sub("", str(err)).strip()
    return text.splitlines()[0] if text else type(err).__name__
