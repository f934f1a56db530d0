"""Export image models to ONNX files and check them against PyTorch in onnxruntime.

The export uses PyTorch's ``torch.export``-based exporter (it needs ``onnx`` and
``onnxscript``: ``pip install 'visionatlas[export]'``); checking needs ``onnxruntime``.
The written file's opset and free dimensions are read back and checked. The public names
are also importable from :mod:`visionatlas.lifecycle.export`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionatlas.lifecycle.export import (
    ExportError,
    ExportMismatchError,
    ExportResult,
    dynamic_shapes,
    eval_mode,
    example_images,
    first_line,
    flatten_outputs,
)

if TYPE_CHECKING:
    from torch import Tensor, nn

__all__ = [
    "DEFAULT_OPSET",
    "INPUT_NAME",
    "check_onnx",
    "compare_onnx",
    "export_onnx",
    "supported_opsets",
]

DEFAULT_OPSET = 18
INPUT_NAME = "images"
_FALLBACK_MIN_OPSET = 7  # torch.onnx._constants.ONNX_MIN_OPSET in torch 2.1 to 2.15


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
    with eval_mode(model), torch.no_grad():
        names, expected = flatten_outputs(model(images))
    try:
        with eval_mode(model), torch.no_grad(), _quiet():
            program = torch.onnx.export(
                model,
                (images,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=list(names),
                opset_version=opset,
                dynamic_shapes=dynamic_shapes(dynamic_batch, dynamic_size),
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
            f"{first_line(err)}"
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
            f"{path} does not load in onnxruntime {onnxruntime.__version__}: {first_line(err)}"
        ) from err
    with eval_mode(model), torch.no_grad():
        _, expected = flatten_outputs(model(images))
    feed = {session.get_inputs()[0].name: images.detach().cpu().numpy()}
    try:
        outputs = session.run(None, feed)
    except Exception as err:
        raise ExportError(
            f"{path} fails in onnxruntime on images of shape {tuple(images.shape)}: "
            f"{first_line(err)}"
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
