"""The ``visionatlas`` command line: browse the catalog and run a demo of every task.

``list``, ``backbones`` and ``plugins`` read metadata only and import neither torch nor
pydantic; ``show --schema`` imports pydantic and ``demo`` imports torch.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from visionatlas import __version__
from visionatlas.catalog import Catalog, get_catalog
from visionatlas.cli._tables import (
    format_seconds,
    format_table,
    human_count,
    render,
    shorten,
)
from visionatlas.cli.demo import DemoResult, run_demo
from visionatlas.cli.models import add_export_parser, add_registry_parser
from visionatlas.errors import UnknownBackboneError, UnknownNameError, VisionAtlasError
from visionatlas.inputs import checking_inputs
from visionatlas.plugins.registrar import PluginReport
from visionatlas.specs import ArchitectureSpec, CommandSpec

if TYPE_CHECKING:
    pass

__all__ = ["build_parser", "main"]

PROG = "visionatlas"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
_GLOB_CHARS = frozenset("*?[")
_NOTE_WIDTH = 60
_ERROR_WIDTH = 70
MAX_INPUT_SIZE = 4096
"""The largest image side the command line accepts (``--input-size``)."""


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def _glob(pattern: str | None) -> str | None:
    """A pattern without wildcards matches as a substring (``resnet`` -> ``*resnet*``)."""
    if pattern is None or _GLOB_CHARS & set(pattern):
        return pattern
    return f"*{pattern}*"


_KINDS = ("task", "backbone", "head", "architecture", "command")


def _counts(report: PluginReport) -> dict[str, int]:
    kinds = [*_KINDS, *sorted(set(report.registered) - set(_KINDS))]
    return {k: len(report.registered[k]) for k in kinds if report.registered.get(k)}


def _counts_text(counts: Mapping[str, int]) -> str:
    if not counts:
        return "nothing"
    return ", ".join(f"{n} {kind}{'' if n == 1 else 's'}" for kind, n in counts.items())


# -- commands ----------------------------------------------------------------------------------
def _cmd_list(args: argparse.Namespace, catalog: Catalog) -> int:
    specs = catalog.architectures(args.task, _glob(args.pattern))
    if args.json:
        _print_json([spec.as_dict() for spec in specs])
        return EXIT_OK
    if not specs:
        print(_nothing_found("architectures", task=args.task, pattern=args.pattern))
        return EXIT_OK
    rows = [
        (
            spec.task,
            spec.name,
            spec.title,
            human_count(spec.num_params),
            shorten(spec.note, _NOTE_WIDTH),
            spec.provider.name if spec.provider else "-",
        )
        for spec in specs
    ]
    print(
        format_table(("Task", "Name", "Display name", "Params", "Note", "Plugin"), rows, right=(3,))
    )
    print(f"\n{len(specs)} architecture{'' if len(specs) == 1 else 's'}")
    return EXIT_OK


def _nothing_found(what: str, *, task: str | None = None, pattern: str | None = None) -> str:
    filters = [f"task {task!r}" if task else "", f"pattern {pattern!r}" if pattern else ""]
    shown = " and ".join(f for f in filters if f)
    return (
        f"No {what}"
        + (f" match {shown}." if shown else " are registered.")
        + (" Run 'visionatlas plugins' to see what each plugin registered.")
    )


def _cmd_show(args: argparse.Namespace, catalog: Catalog) -> int:
    spec = catalog.get_architecture(args.task, args.architecture)
    info = spec.as_dict()
    backbone: dict[str, Any] | None = None
    backbone_error: str | None = None
    if spec.backbone is not None:
        try:
            backbone = catalog.get_backbone(spec.backbone).as_dict()
        except UnknownBackboneError as err:
            backbone_error = str(err)
    info["backbone_info"] = backbone
    if args.schema:
        info["config_schema"] = catalog.config_class(
            args.task, args.architecture
        ).model_json_schema()
    if args.json:
        _print_json(info)
        return EXIT_OK
    _print_show(spec, info, backbone, backbone_error)
    return EXIT_OK


def _print_show(
    spec: ArchitectureSpec,
    info: dict[str, Any],
    backbone: dict[str, Any] | None,
    backbone_error: str | None,
) -> None:
    params = spec.num_params
    fields = [
        ("Task", spec.task),
        ("Name", spec.name),
        ("Display name", spec.title),
        ("Note", spec.note or "-"),
        ("Parameters", "-" if params is None else f"{params:,} ({human_count(params)})"),
        ("Default classes", spec.default_num_classes),
        ("Pretrained", "available" if spec.pretrained_available else "not available"),
        ("Backbone", spec.backbone or "-"),
        ("Compatible backbones", ", ".join(spec.compatible_backbones) or "-"),
        ("Tags", ", ".join(spec.tags) or "-"),
    ]
    _print_section(f"{spec.task}/{spec.name}", fields)
    _print_section("Default hyperparameters", list(spec.hyperparameters.as_dict().items()))
    _print_section(
        "Provider",
        [
            ("Plugin", info["plugin"] or "-"),
            ("Distribution", info["distribution"] or "-"),
            ("Version", info["version"] or "-"),
        ],
    )
    if backbone is not None:
        _print_section(
            f"Backbone {backbone['name']}",
            [
                ("Family", backbone["family"]),
                ("Parameters", human_count(backbone["num_params"])),
                ("Out channels", backbone["out_channels"]),
                ("Pre-logits dim", backbone["pre_logits_dim"]),
                ("Pretrained weights", _weights_text(backbone["pretrained_weights"])),
                (
                    "Input size",
                    f"default {backbone['default_input_size']}, min {backbone['min_input_size']}",
                ),
                ("Plugin", backbone["plugin"] or "-"),
            ],
        )
        levels = [(lv["name"], lv["channels"], lv["stride"]) for lv in backbone["feature_levels"]]
        if levels:
            print("Feature levels:")
            table = format_table(("Level", "Channels", "Stride"), levels, right=(1, 2))
            print("\n".join("  " + line for line in table.splitlines()))
            print()
    elif backbone_error is not None:
        _print_section("Backbone", [("Error", backbone_error)])
    if "config_schema" in info:
        print("Config schema:")
        print(json.dumps(info["config_schema"], indent=2))


def _weights_text(weights: str | dict[str, Any] | None) -> str:
    if isinstance(weights, dict):
        return f"{weights['name']} ({weights['url']})"
    return weights or "-"


def _print_section(title: str, fields: Sequence[tuple[str, Any]]) -> None:
    print(f"{title}:")
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        print(f"  {name.ljust(width)}  {value}")
    print()


def _cmd_backbones(args: argparse.Namespace, catalog: Catalog) -> int:
    specs = catalog.backbones(_glob(args.pattern), pretrained_only=args.pretrained_only)
    if args.json:
        _print_json([spec.as_dict() for spec in specs])
        return EXIT_OK
    if not specs:
        what = "backbones with pretrained weights" if args.pretrained_only else "backbones"
        print(_nothing_found(what, pattern=args.pattern))
        return EXIT_OK
    rows = [
        (
            spec.name,
            spec.family,
            human_count(spec.num_params),
            spec.out_channels,
            ",".join(str(lv.stride) for lv in spec.feature_levels) or "-",
            spec.weights_label or "-",
        )
        for spec in specs
    ]
    print(
        format_table(
            ("Name", "Family", "Params", "Out channels", "Strides", "Pretrained weights"),
            rows,
            right=(2, 3),
        )
    )
    print(f"\n{len(specs)} backbone{'' if len(specs) == 1 else 's'}")
    return EXIT_OK


def _cmd_plugins(args: argparse.Namespace, catalog: Catalog) -> int:
    reports = catalog.list_plugins()
    if args.json:
        _print_json([{**r.as_dict(), "counts": _counts(r)} for r in reports])
        return EXIT_OK
    if not reports:
        print("No plugins found.")
        return EXIT_OK
    rows = [
        (r.name, r.distribution or "-", r.version or "-", r.status, _counts_text(_counts(r)))
        for r in reports
    ]
    print(format_table(("Name", "Distribution", "Version", "Status", "Registered"), rows))
    problems = [(r.name, p) for r in reports for p in r.problems]
    if problems:
        print(f"\nProblems ({len(problems)}):")
        for name, problem in problems:
            print(f"  {name}: {' '.join(str(problem).split())}")
    return EXIT_OK


# -- demo --------------------------------------------------------------------------------------
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
        _print_json(
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
        inferred = r.inferred_output or "n/a"
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


# -- argument parsing --------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _input_size(text: str) -> tuple[int, int]:
    parts = text.lower().replace("x", ",").split(",")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        dims = []
    if len(dims) == 1:
        dims *= 2
    if len(dims) != 2 or not all(1 <= d <= MAX_INPUT_SIZE for d in dims):
        raise argparse.ArgumentTypeError(
            "expected a size such as 224 or HxW such as 224x160, each side from 1 to "
            f"{MAX_INPUT_SIZE}, got {text!r}"
        )
    return dims[0], dims[1]


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, ``PROG COMMAND: error: ...`` (exit 2), without the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser(commands: Sequence[CommandSpec] = ()) -> argparse.ArgumentParser:
    """The argument parser of the ``visionatlas`` command.

    ``commands`` are plugin subcommands; they are listed in the help, and everything after
    their name is left to the plugin's own parser (see :func:`run_plugin_command`).
    """
    parser = _Parser(
        prog=PROG,
        description="Browse the visionatlas catalog of vision architectures and run demos.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print plugin warnings")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )
    pattern_help = "glob over names, e.g. 'resnet*'; without wildcards it matches as a substring"

    p = sub.add_parser(
        "list",
        help="list architectures",
        description="List architectures (reads metadata only; fast).",
    )
    p.add_argument("--task", help="only this task")
    p.add_argument("--pattern", metavar="GLOB", help=pattern_help)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_cmd_list)

    p = sub.add_parser(
        "show",
        help="show one architecture's metadata",
        description="Show an architecture: metadata, default hyperparameters, "
        "provider and backbone.",
    )
    p.add_argument("task", metavar="TASK")
    p.add_argument("architecture", metavar="ARCH")
    p.add_argument(
        "--schema", action="store_true", help="add the JSON schema of the architecture's config"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_cmd_show)

    p = sub.add_parser(
        "backbones",
        help="list backbones",
        description="List backbones with channels, strides and weights.",
    )
    p.add_argument("pattern", nargs="?", metavar="PATTERN", help=pattern_help)
    p.add_argument(
        "--pretrained-only", action="store_true", help="only backbones with pretrained weights"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_cmd_backbones)

    p = sub.add_parser(
        "plugins",
        help="list discovered plugins and their problems",
        description="List discovered plugins: status, what they registered and their problems.",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_cmd_plugins)

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
    p.add_argument("--batch-size", type=_positive_int, default=2, help="default: 2")
    p.add_argument(
        "--input-size",
        type=_input_size,
        default=(224, 224),
        metavar="SIZE",
        help=f"N or HxW, sides from 1 to {MAX_INPUT_SIZE} (default: 224)",
    )
    p.add_argument(
        "--repeats",
        type=_positive_int,
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

    add_registry_parser(sub)
    add_export_parser(sub, input_size=_input_size, positive_int=_positive_int)

    for spec in commands:
        provider = spec.provider.name if spec.provider else "a plugin"
        p = sub.add_parser(
            spec.name,
            help=f"{spec.help} [plugin {provider}]" if spec.help else f"[plugin {provider}]",
            add_help=False,
        )
        p.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        p.set_defaults(handler=None, plugin_command=spec.name)
    return parser


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{PROG}: {record.levelname.lower()}: {record.getMessage()}"


@contextlib.contextmanager
def _plugin_warnings(level: int) -> Iterator[None]:
    """Show the ``visionatlas`` logger's warnings (broken plugins) on stderr, briefly."""
    logger = logging.getLogger("visionatlas")
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(_Formatter())
    previous = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = previous


def _split_plugin_command(
    argv: Sequence[str], names: Iterable[str]
) -> tuple[list[str], str, list[str]] | None:
    """``(global options, command, its arguments)`` when ``argv`` runs a plugin command."""
    for i, token in enumerate(argv):
        if token.startswith("-"):
            continue
        return (list(argv[:i]), token, list(argv[i + 1 :])) if token in set(names) else None
    return None


def run_plugin_command(catalog: Catalog, name: str, argv: Sequence[str]) -> int:
    """Parse ``argv`` with the plugin command's own parser and run its handler."""
    spec = next(c for c in catalog.commands() if c.name == name)
    configure = catalog.load_command(name)
    parser = argparse.ArgumentParser(prog=f"{PROG} {name}", description=spec.help or None)
    configure(parser)
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE if exit_.code else 0
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return int(handler(args))


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(argv)
    except BrokenPipeError:  # e.g. `visionatlas list | head`: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def _quiet(argv: Sequence[str]) -> bool:
    """Whether plugin warnings stay hidden: ``-q``, or ``plugins`` (it shows them itself)."""
    positional = [token for token in argv if not token.startswith("-")]
    return bool({"-q", "--quiet"} & set(argv)) or positional[:1] == ["plugins"]


def _main(argv: list[str]) -> int:
    catalog = get_catalog()
    level = logging.CRITICAL + 1 if _quiet(argv) else logging.WARNING
    with _plugin_warnings(level):  # discovery happens here, once
        commands = catalog.commands()
    split = _split_plugin_command(argv, [c.name for c in commands])
    if split is not None:
        options, name, rest = split
        try:  # the global options before the command (-q, --help, --version)
            build_parser(commands).parse_args([*options, "plugins"])
        except SystemExit as exit_:
            return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
        try:
            with checking_inputs():
                return run_plugin_command(catalog, name, rest)
        except VisionAtlasError as err:
            print(f"{PROG}: error: {err}", file=sys.stderr)
            return EXIT_USAGE if isinstance(err, UnknownNameError) else EXIT_FAILURE
    parser = build_parser(commands)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE if exit_.code else 0
    handler: Callable[[argparse.Namespace, Catalog], int] = args.handler
    try:
        with _plugin_warnings(level), checking_inputs():
            return handler(args, catalog)
    except UnknownNameError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except VisionAtlasError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
