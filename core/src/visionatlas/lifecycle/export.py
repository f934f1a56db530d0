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

__all__ = [
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

DEFAULT_OPSET = 18
INPUT_NAME = "images"
_FALLBACK_MIN_OPSET = 7  # torch.onnx._constants.ONNX_MIN_OPSET in torch 2.1 to 2.15


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
def _eval_mode(model: nn.Module) -> Iterator[None]:
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, training in modes.items():
            module.train(training)


def _flatten(outputs: Any) -> tuple[tuple[str, ...], list[Tensor]]:
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


def _dynamic_shapes(dynamic_batch: bool, dynamic_size: bool) -> tuple[dict[int, Any]] | None:
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
    with _eval_mode(model), torch.no_grad():
        try:
            program = torch.export.export(
                model, (images,), dynamic_shapes=_dynamic_shapes(dynamic_batch, dynamic_size)
            )
        except Exception as err:
            raise ExportError(
                f"torch.export cannot capture the {type(model).__name__}: "
                f"{type(err).__name__}: {_first_line(err)}"
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
            f"{_first_line(err)}"
        ) from err


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    input_size: int | Sequence[int] | None = None,
    dynamic_batch: bool = True,
    dynamic_size: bool = False,
    opset: int = DEFAULT_OPSET,
    check: bool = False,
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> ExportResult:
    """Export ``model`` (in eval mode) to an ONNX file at ``path``.

    The graph takes ``images`` ``(N, 3, H, W)`` float32; ``dynamic_batch`` leaves ``N``
    free, ``dynamic_size`` also ``H`` and ``W`` (models whose computation depends on the
    size may refuse it, and a square example may make the exporter assume square inputs).
    Weights over 2 GB go to ``<path>.data`` (listed in ``files``). With ``check=True`` the
    file is run in onnxruntime on a batch of another size than the export example (when
    the batch is dynamic) and compared to PyTorch; a difference beyond
    ``atol + rtol * |expected|`` raises :class:`ExportError`.

    ``opset`` must lie in :func:`supported_opsets` (else ``ValueError``). The exporter
    writes its own opset and converts; when the file does not have ``opset`` after all
    (onnx's converter lacks an adapter for an operator), :class:`ExportError` is raised
    and the file removed.
    """
    import torch

    lowest, highest = supported_opsets()
    if isinstance(opset, bool) or not isinstance(opset, int) or not lowest <= opset <= highest:
        raise ValueError(
            f"opset must be an int from {lowest} to {highest} (the opsets the installed "
            f"torch.onnx exporter and onnx support), got {opset!r}"
        )
    target = Path(path)
    images = example_images(model, input_size=input_size)
    with _eval_mode(model), torch.no_grad():
        names, expected = _flatten(model(images))
    try:
        with _eval_mode(model), torch.no_grad(), _quiet():
            program = torch.onnx.export(
                model,
                (images,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=list(names),
                opset_version=opset,
                dynamic_shapes=_dynamic_shapes(dynamic_batch, dynamic_size),
                verbose=False,
            )
    except ImportError as err:
        raise ExportError(
            f"ONNX export needs the onnx and onnxscript packages ({err}); install them "
            "with pip install 'visionatlas[export]'"
        ) from err
    except Exception as err:
        raise ExportError(
            f"cannot export the {type(model).__name__} to ONNX: {type(err).__name__}: "
            f"{_first_line(err)}"
        ) from err
    if program is None:  # pragma: no cover - the dynamo exporter always returns a program
        raise ExportError("torch.onnx.export returned no program")
    data = target.with_name(f"{target.name}.data")  # where weights over 2 GB go
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        data.unlink(missing_ok=True)
        program.save(target)
    except OSError as err:
        raise ExportError(
            f"cannot write {target}: {err.strerror or err}; give a file path in a directory "
            "you can write to"
        ) from err
    files = (data,) if data.exists() else ()
    try:
        _check_dynamic_dims(target, dynamic_batch, dynamic_size)
        written = _check_opset(target, opset)
    except ExportError:
        for file in (target, *files):
            file.unlink(missing_ok=True)
        raise
    result = ExportResult(
        path=target,
        input_shape=tuple(images.shape),
        output_names=names,
        output_shapes=tuple(tuple(t.shape) for t in expected),
        dynamic_batch=dynamic_batch,
        dynamic_size=dynamic_size,
        opset=written,
        files=files,
    )
    if not check:
        return result
    batch = 3 if dynamic_batch else images.shape[0]
    probe = example_images(model, input_size=tuple(images.shape[-2:]), batch_size=batch)
    diff = check_onnx(model, target, probe, atol=atol, rtol=rtol)
    return ExportResult(**{**result.__dict__, "max_abs_diff": diff})


def supported_opsets() -> tuple[int, int]:
    """``(lowest, highest)`` ONNX opset that :func:`export_onnx` accepts.

    Queried from the installed packages: the lowest is torch.onnx's ``ONNX_MIN_OPSET``, the
    highest the newest opset the installed ``onnx`` defines. The exporter writes its own
    opset (18 with torch 2.15) and converts to the requested one with onnx's converter.
    """
    try:
        import onnx
    except ImportError as err:
        raise ExportError(
            f"ONNX export needs the onnx and onnxscript packages ({err}); install them "
            "with pip install 'visionatlas[export]'"
        ) from err
    try:
        from torch.onnx._constants import ONNX_MIN_OPSET as lowest
    except ImportError:  # pragma: no cover - a private module of torch
        lowest = _FALLBACK_MIN_OPSET
    return int(lowest), int(onnx.defs.onnx_opset_version())


def _native_opset() -> int:
    """The opset the installed torch.onnx exporter writes before any conversion."""
    try:
        from torch.onnx._internal.exporter._constants import TORCHLIB_OPSET
    except ImportError:  # pragma: no cover - a private module of torch
        return DEFAULT_OPSET
    return int(TORCHLIB_OPSET)


def _written_opset(path: Path) -> int:
    """The default-domain (``ai.onnx``) opset an ONNX file imports."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise ExportError(f"{path} imports no ONNX (ai.onnx) opset")
    return int(versions[0])


def _check_opset(path: Path, opset: int) -> int:
    """The opset of the file at ``path``; raise if it is not the requested ``opset``."""
    written = _written_opset(path)
    if written != opset:
        native = _native_opset()
        raise ExportError(
            f"the exporter could not convert the model to ONNX opset {opset}: {path} has "
            f"opset {written} (the exporter writes opset {native} and converts, and onnx's "
            f"version converter lacks an adapter for one of the operators); export with "
            f"opset {native} or another one that converts"
        )
    return written


def _check_dynamic_dims(path: Path, dynamic_batch: bool, dynamic_size: bool) -> None:
    """Raise if the exporter fixed a dimension that was asked to stay free."""
    import onnx

    graph_input = onnx.load(str(path), load_external_data=False).graph.input[0]
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    wanted = ([0] if dynamic_batch else []) + ([2, 3] if dynamic_size else [])
    fixed = [i for i in wanted if i < len(dims) and not isinstance(dims[i], str)]
    if fixed:
        names = ", ".join(("N", "C", "H", "W")[i] for i in fixed)
        raise ExportError(
            f"the exporter fixed {names} of the input to {[dims[i] for i in fixed]} in {path} "
            "(the model's computation depends on them); export without "
            + ("dynamic_size" if 0 not in fixed else "dynamic_batch/dynamic_size")
        )


def _run_onnx(model: nn.Module, path: str | os.PathLike[str], images: Tensor) -> list[Any]:
    """``[(onnxruntime output, PyTorch output), ...]`` as numpy arrays of equal shapes."""
    import torch

    try:
        import onnxruntime
    except ImportError as err:
        raise ExportError(
            "checking an ONNX export needs onnxruntime: pip install onnxruntime"
        ) from err
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:
        raise ExportError(
            f"{path} does not load in onnxruntime {onnxruntime.__version__}: {_first_line(err)}"
        ) from err
    with _eval_mode(model), torch.no_grad():
        _, expected = _flatten(model(images))
    feed = {session.get_inputs()[0].name: images.detach().cpu().numpy()}
    try:
        outputs = session.run(None, feed)
    except Exception as err:
        raise ExportError(
            f"{path} fails in onnxruntime on images of shape {tuple(images.shape)}: "
            f"{_first_line(err)}"
        ) from err
    pairs = []
    for index, (got, want) in enumerate(zip(outputs, expected, strict=True)):
        want_np = want.detach().cpu().numpy()
        if got.shape != want_np.shape:
            raise ExportError(
                f"{path}: output {index} has shape {got.shape} in onnxruntime but "
                f"{want_np.shape} in PyTorch"
            )
        pairs.append((got, want_np))
    return pairs


def compare_onnx(model: nn.Module, path: str | os.PathLike[str], images: Tensor) -> list[float]:
    """Run ``path`` in onnxruntime on ``images``; return each output's max abs difference.

    A failing run (for instance an input size the graph does not accept) or an output of
    another shape raises :class:`ExportError`.
    """
    import numpy as np

    return [
        float(np.max(np.abs(got - want))) if got.size else 0.0
        for got, want in _run_onnx(model, path, images)
    ]


def check_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    images: Tensor,
    *,
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> float:
    """Like :func:`compare_onnx`; raise :class:`ExportMismatchError` beyond the tolerance.

    An output passes where ``|onnx - torch| <= atol + rtol * |torch|`` everywhere.
    Returns the largest absolute difference.
    """
    import numpy as np

    worst = 0.0
    for index, (got, want) in enumerate(_run_onnx(model, path, images)):
        diff = float(np.max(np.abs(got - want))) if got.size else 0.0
        worst = max(worst, diff)
        if not np.allclose(got, want, atol=atol, rtol=rtol):
            raise ExportMismatchError(
                f"{path}: output {index} differs from PyTorch by up to {diff:.3g} "
                f"(tolerance atol={atol}, rtol={rtol})",
                max_abs_diff=diff,
            )
    return worst


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's progress lines on stdout."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _first_line(err: BaseException) -> str:
    text = _ANSI.sub("", str(err)).strip()
    return text.splitlines()[0] if text else type(err).__name__
