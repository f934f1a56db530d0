"""The commands that browse the catalog: ``list``, ``show``, ``backbones`` and ``plugins``.

They read metadata only and import neither torch nor pydantic (``show --schema`` imports
pydantic).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from typing import Any

from visionatlas.catalog import Catalog
from visionatlas.cli._common import EXIT_OK, print_json
from visionatlas.cli._tables import format_table, human_count, shorten
from visionatlas.errors import UnknownBackboneError
from visionatlas.plugins.registrar import PluginReport
from visionatlas.specs import ArchitectureSpec

__all__ = ["add_browse_parsers"]

_GLOB_CHARS = frozenset("*?[")
_NOTE_WIDTH = 60
_PATTERN_HELP = "glob over names, e.g. 'resnet*'; without wildcards it matches as a substring"


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
        print_json([spec.as_dict() for spec in specs])
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
        print_json(info)
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
        print_json([spec.as_dict() for spec in specs])
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
        print_json([{**r.as_dict(), "counts": _counts(r)} for r in reports])
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


def add_browse_parsers(sub: Any) -> None:
    """Add ``list``, ``show``, ``backbones`` and ``plugins`` to the subcommands ``sub``."""
    p = sub.add_parser(
        "list",
        help="list architectures",
        description="List architectures (reads metadata only; fast).",
    )
    p.add_argument("--task", help="only this task")
    p.add_argument("--pattern", metavar="GLOB", help=_PATTERN_HELP)
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
    p.add_argument("pattern", nargs="?", metavar="PATTERN", help=_PATTERN_HELP)
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
