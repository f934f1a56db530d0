"""The ``demo`` command: build each task's demo architecture and run it on a synthetic batch.

It prints the input and output shapes, the output shapes inferred on the meta device, the
parameter count and the build and forward times. A model whose output size depends on the
data (a detector returns as many boxes as it finds) has no output shape to infer: the demo
says so and describes what the model returned for the example batch.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from visionatlas.catalog import Catalog
from visionatlas.cli._common import (
    EXIT_FAILURE,
    EXIT_OK,
    MAX_INPUT_SIZE,
    PROG,
    input_size,
    positive_int,
    print_json,
)
from visionatlas.cli._tables import (
    describe_variable_output,
    format_seconds,
    format_table,
    human_count,
    jsonable,
    render,
    shape_tree,
    shorten,
    summarize,
)
from visionatlas.errors import ShapeInferenceError
from visionatlas.inputs import checking_inputs
from visionatlas.plugins.lazy import resolve

if TYPE_CHECKING:
    from torch import nn

__all__ = ["DemoResult", "add_demo_parser", "run_demo"]

_ERROR_WIDTH = 70
_DATA_DEPENDENT = "data-dependent"
"""The inferred output of a model whose output size depends on the data."""
_META_LIMITS = ("data-independent", "data-dependent", "cannot be called on meta tensors")
"""Messages of the errors tracing on the meta device raises where values decide shapes."""
_META_LIMIT_TYPES = frozenset({"DataDependentOutputException", "DynamicOutputShapeException"})


@dataclass
class DemoResult:
    task: str
    architecture: str | None = None
    input_tree: Any = None
    output_tree: Any = None
    inferred_output: str | None = None
    inferred_error: str | None = None
    variable_output: str | None = None
    """What the model returned, where its output size depends on the data."""
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
            "variable_output": self.variable_output,
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
    except ShapeInferenceError as err:
        if _depends_on_data(err):  # not a failure: there is no shape to infer
            result.variable_output = describe_variable_output(output)
        else:
            result.inferred_error = f"{type(err).__name__}: {err}"
    except Exception as err:  # inference on the meta device is best effort
        result.inferred_error = f"{type(err).__name__}: {err}"
    return result


def _depends_on_data(err: BaseException) -> bool:
    """Whether tracing on the meta device failed because values decide the output's size."""
    seen: set[int] = set()
    cause: BaseException | None = err.__cause__
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if type(cause).__name__ in _META_LIMIT_TYPES or any(
            text in str(cause) for text in _META_LIMITS
        ):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


# -- the command -------------------------------------------------------------------------------
def _cmd_demo(args: argparse.Namespace, catalog: Catalog) -> int:
    tasks = list(dict.fromkeys(args.task)) if args.task else catalog.list_tasks()
    for task in tasks:
        catalog.get_task(task)  # unknown task: exit 2 before anything runs
    if not tasks:
        print(
            f"{PROG}: error: no tasks are installed; run 'visionatlas plugins' to see why",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    import torch

    with contextlib.suppress(ImportError):  # keep one-time imports out of the build time
        import torchvision  # noqa: F401
    size = args.input_size
    results = []
    with checking_inputs(args.check_inputs):
        for task in tasks:
            if not args.json:
                print(f"running {task} ...", file=sys.stderr, flush=True)
            results.append(
                run_demo(
                    catalog,
                    task,
                    batch_size=args.batch_size,
                    size=size,
                    repeats=args.repeats,
                    seed=args.seed,
                    check_inputs=args.check_inputs,
                )
            )
    failed = [r for r in results if r.error]
    if args.json:
        print_json(
            {
                "batch_size": args.batch_size,
                "input_size": list(size),
                "repeats": args.repeats,
                "seed": args.seed,
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "results": [r.as_dict() for r in results],
            }
        )
        return EXIT_FAILURE if failed else EXIT_OK
    _print_demo(results, args)
    return EXIT_FAILURE if failed else EXIT_OK


def _print_demo(results: list[DemoResult], args: argparse.Namespace) -> None:
    import torch

    rows: list[tuple[Any, ...]] = []
    for r in results:
        if r.error:
            rows.append(
                (
                    r.task,
                    r.architecture or "-",
                    "-",
                    "ERROR: " + shorten(r.error, _ERROR_WIDTH),
                    "-",
                    "-",
                    "-",
                    "-",
                )
            )
            continue
        inferred = r.inferred_output or (_DATA_DEPENDENT if r.variable_output else "n/a")
        if r.inferred_output is not None and r.inferred_output == r.output:
            inferred = "same"
        rows.append(
            (
                r.task,
                r.architecture,
                render(r.input_tree),
                r.output,
                inferred,
                human_count(r.num_params),
                format_seconds(r.build_s),
                format_seconds(r.forward_s),
            )
        )
    print(
        format_table(
            (
                "Task",
                "Architecture",
                "Input",
                "Output",
                "Inferred output",
                "Params",
                "Build",
                "Forward",
            ),
            rows,
            right=(5, 6, 7),
        )
    )
    h, w = args.input_size
    print(
        f"\nbatch size {args.batch_size}, input {h}x{w}, forward time: median of "
        f"{args.repeats} run{'' if args.repeats == 1 else 's'} after one warm-up "
        f"(torch {torch.__version__}, {torch.get_num_threads()} threads, CPU)"
    )
    notes = [f"  {r.task}: {r.note}" for r in results if r.note]
    notes += [
        f"  {r.task}: output size depends on the data: {r.variable_output}"
        for r in results
        if r.variable_output and not r.error
    ]
    notes += [
        f"  {r.task}: shape inference failed: {shorten(r.inferred_error, 200)}"
        for r in results
        if r.inferred_error and not r.error
    ]
    if notes:
        print("Notes:\n" + "\n".join(notes))
    errors = [r for r in results if r.error]
    if errors:
        print(
            f"\n{len(errors)} of {len(results)} task{'' if len(results) == 1 else 's'} failed:",
            file=sys.stderr,
        )
        for r in errors:
            print(f"  {r.task} ({r.architecture or 'no architecture'}): {r.error}", file=sys.stderr)


def add_demo_parser(sub: Any) -> None:
    """Add ``demo`` to the subcommands ``sub``."""
    p = sub.add_parser(
        "demo",
        help="build each task's demo model and time a forward pass",
        description="Build each task's demo architecture (default config, "
        "random weights), run a synthetic batch through it and "
        "time it. Exit code 1 when any task fails.",
    )
    p.add_argument(
        "--task",
        action="extend",
        nargs="+",
        metavar="T",
        help="only these tasks (repeatable); default: every installed task",
    )
    p.add_argument("--batch-size", type=positive_int, default=2, help="default: 2")
    p.add_argument(
        "--input-size",
        type=input_size,
        default=(224, 224),
        metavar="SIZE",
        help=f"N or HxW, sides from 1 to {MAX_INPUT_SIZE} (default: 224)",
    )
    p.add_argument(
        "--repeats",
        type=positive_int,
        default=3,
        help="timed forward passes after the warm-up (default: 3)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--no-check-inputs",
        dest="check_inputs",
        action="store_false",
        help="skip the check for NaN and infinite pixel values (on by default)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_cmd_demo)
