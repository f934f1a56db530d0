"""The demo: build each task's demo architecture and run it on a synthetic batch."""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from visionatlas.catalog import Catalog
from visionatlas.cli._tables import jsonable, render, shape_tree, summarize
from visionatlas.plugins.lazy import resolve

if TYPE_CHECKING:
    from torch import nn

__all__ = ["DemoResult", "run_demo"]


@dataclass
class DemoResult:
    task: str
    architecture: str | None = None
    input_tree: Any = None
    output_tree: Any = None
    inferred_output: str | None = None
    inferred_error: str | None = None
    num_params: int | None = None
    build_s: float | None = None
    forward_s: float | None = None
    forward_runs: tuple[float, ...] = ()
    note: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "architecture": self.architecture,
            "status": "error" if self.error else "ok",
            "input_shape": jsonable(self.input_tree),
            "input": None if self.input_tree is None else render(self.input_tree),
            "output_shape": jsonable(self.output_tree),
            "output": self.output,
            "inferred_output": self.inferred_output,
            "inferred_error": self.inferred_error,
            "num_params": self.num_params,
            "build_s": _round(self.build_s),
            "forward_s": _round(self.forward_s),
            "forward_runs_s": [_round(t) for t in self.forward_runs],
            "note": self.note,
            "error": self.error,
        }

    @property
    def output(self) -> str | None:
        return None if self.output_tree is None else render(self.output_tree)


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 6)


def _demo_architecture(catalog: Catalog, task: str) -> tuple[str, str | None]:
    """The architecture to demo and, when the task's own choice is unusable, why not."""
    spec = catalog.get_task(task)
    names = catalog.list_architectures(task)
    if not names:
        raise LookupError(f"task {task!r} has no registered architectures")
    chosen = spec.demo_architecture
    if chosen is None:
        return names[0], None
    if chosen in names:
        return chosen, None
    return names[0], (
        f"demo architecture {chosen!r} of task {task!r} is not registered; using {names[0]!r}"
    )


def _preload(catalog: Catalog, task: str, architecture: str) -> None:
    """Import the code a build needs, so that build time measures construction only."""
    spec = catalog.get_architecture(task, architecture)
    references: list[Any] = [spec.builder, spec.config_class]
    if spec.backbone is not None and spec.backbone in catalog.list_backbones():
        references.append(catalog.get_backbone(spec.backbone).builder)
    for reference in references:
        target = getattr(reference, "reference", reference)  # a LazyCall's target
        if isinstance(target, str):
            with contextlib.suppress(Exception):  # a real failure surfaces in the build
                resolve(target)


def run_demo(
    catalog: Catalog,
    task: str,
    *,
    batch_size: int,
    size: tuple[int, int],
    repeats: int,
    seed: int,
    check_inputs: bool = True,
) -> DemoResult:
    """Build ``task``'s demo architecture and time it on a synthetic batch.

    ``check_inputs`` builds the model with the value check on (see
    :func:`visionatlas.create_model`). Errors are recorded in the result, not raised.
    """
    import torch

    from visionatlas.models.inspection import count_parameters, infer_output_shape

    result = DemoResult(task=task)
    try:
        result.architecture, result.note = _demo_architecture(catalog, task)
        _preload(catalog, task, result.architecture)
        torch.manual_seed(seed)
        start = time.perf_counter()
        model: nn.Module = catalog.create_model(
            task, result.architecture, check_inputs=check_inputs
        )
        result.build_s = time.perf_counter() - start
        model.eval()
        result.num_params = count_parameters(model, trainable_only=False)
        torch.manual_seed(seed)
        batch = catalog.example_inputs(task, batch_size=batch_size, input_size=size)
        result.input_tree = shape_tree(batch)
        with torch.inference_mode():
            output = model(batch)  # warm-up
            runs = []
            for _ in range(repeats):
                start = time.perf_counter()
                model(batch)
                runs.append(time.perf_counter() - start)
        result.forward_runs = tuple(runs)
        result.forward_s = statistics.median(runs)
        result.output_tree = shape_tree(output)
    except Exception as err:  # one failing task must not stop the others
        result.error = f"{type(err).__name__}: {err}"
        return result
    try:
        result.inferred_output = summarize(infer_output_shape(model, batch), inferred=True)
    except Exception as err:  # inference on the meta device is best effort
        result.inferred_error = f"{type(err).__name__}: {err}"
    return result
