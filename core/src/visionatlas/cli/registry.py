"""The ``registry list|show|delete`` commands: browse the model registry.

``registry list`` and ``registry show`` read the SQLite index only and import neither torch
nor pydantic.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionatlas.catalog import Catalog
from visionatlas.cli._common import EXIT_OK, PROG, print_json, seconds, usage_error
from visionatlas.cli._tables import format_table, human_count
from visionatlas.lifecycle.versioning.errors import InvalidVersionError, RegistryWarning

if TYPE_CHECKING:
    from visionatlas.lifecycle.versioning.rows import ModelEntry
    from visionatlas.lifecycle.versioning.store import ModelRegistry

__all__ = ["add_registry_parser", "open_registry"]


def open_registry(args: argparse.Namespace, catalog: Catalog | None = None) -> ModelRegistry:
    """The registry ``--registry`` names (default: the user's), waiting ``--timeout``."""
    from visionatlas.lifecycle.versioning.store import ModelRegistry

    timeout = getattr(args, "timeout", None)
    if timeout is None:
        return ModelRegistry(args.registry, catalog=catalog)
    return ModelRegistry(args.registry, catalog=catalog, timeout=timeout)


def _report_problems(registry: ModelRegistry) -> None:
    """One warning line per damaged index row (the listing skipped them)."""
    for damage in registry.problems():
        print(f"{PROG}: warning: {damage}", file=sys.stderr)


def _cmd_registry_list(args: argparse.Namespace, catalog: Catalog) -> int:
    registry = open_registry(args)
    try:
        with warnings.catch_warnings():  # damaged rows are reported below, one line each
            warnings.simplefilter("ignore", RegistryWarning)
            entries = registry.search(args.pattern, tags=args.tag or ())
    except ValueError as err:
        return usage_error(str(err))
    _report_problems(registry)
    if args.json:
        print_json([entry.as_dict() for entry in entries], allow_nan=False)
        return EXIT_OK
    if not entries:
        filters = [f"pattern {args.pattern!r}" if args.pattern else ""]
        filters += [f"tag {tag!r}" for tag in args.tag or ()]
        shown = " and ".join(f for f in filters if f)
        print(f"No registered models{f' match {shown}' if shown else ''} in {registry.root}.")
        return EXIT_OK
    rows = [
        (
            e.name,
            e.version,
            e.task,
            e.architecture,
            e.num_classes,
            human_count(e.num_params),
            ",".join(e.tags) or "-",
            e.created_at.replace("T", " ").removesuffix("+00:00"),
        )
        for e in entries
    ]
    headers = ("Name", "Version", "Task", "Architecture", "Classes", "Params", "Tags", "Created")
    print(format_table(headers, rows, right=(4, 5)))
    count = len(entries)
    print(f"\n{count} model version{'' if count == 1 else 's'} in {registry.root}")
    return EXIT_OK


def _cmd_registry_show(args: argparse.Namespace, catalog: Catalog) -> int:
    registry = open_registry(args)
    try:
        entry = registry.get(args.name, args.version)
    except InvalidVersionError as err:
        return usage_error(str(err))
    versions = registry.versions(entry.name)
    if args.json:
        print_json({**entry.as_dict(), "all_versions": versions}, allow_nan=False)
        return EXIT_OK
    _print_entry(entry, versions)
    return EXIT_OK


def _print_entry(entry: ModelEntry, versions: list[str]) -> None:
    info = entry.build_info
    provider = info.plugin or "-"
    if info.distribution:
        provider += f" ({info.distribution} {info.version or ''})".replace(" )", ")")
    fields: list[tuple[str, Any]] = [
        ("Name", entry.name),
        ("Version", entry.version),
        ("All versions", ", ".join(versions)),
        ("Task", info.task),
        ("Architecture", info.architecture),
        ("Classes", info.num_classes),
        ("Parameters", f"{entry.num_params:,} ({human_count(entry.num_params)})"),
        ("Tags", ", ".join(entry.tags) or "-"),
        ("Description", entry.description or "-"),
        ("Provider", provider),
        ("Created", entry.created_at),
        ("Weights", str(entry.weights_path)),
        ("SHA-256", entry.weights_sha256),
        ("Size", f"{entry.weights_size:,} bytes"),
        ("Config", json.dumps(info.config, sort_keys=True)),
    ]
    width = max(len(name) for name, _ in fields)
    print(f"{entry.name} {entry.version}:")
    for name, value in fields:
        print(f"  {name.ljust(width)}  {value}")
    if entry.metrics:
        print("Metrics:")
        for key, value in entry.metrics.items():
            print(f"  {key}: {value}")


def _cmd_registry_delete(args: argparse.Namespace, catalog: Catalog) -> int:
    from visionatlas.lifecycle.versioning.semver import normalize_version

    registry = open_registry(args)
    if args.version.strip().lower() == "latest":
        return usage_error("delete needs an explicit version, not 'latest'")
    try:
        version = normalize_version(args.version)
        registry.delete(args.name, version)  # a damaged entry too
    except InvalidVersionError as err:
        return usage_error(str(err))
    print(f"Deleted {args.name} {version} from {registry.root}")
    return EXIT_OK


def add_registry_parser(sub: Any) -> None:
    """Add ``registry list|show|delete`` to the subcommands ``sub``."""
    registry = sub.add_parser(
        "registry",
        help="list, show and delete registered model versions",
        description="Browse the model registry (default directory: $VISIONATLAS_REGISTRY, "
        "else the user data directory).",
    )
    actions = registry.add_subparsers(dest="registry_command", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--registry",
        metavar="DIR",
        type=Path,
        help="registry directory (default: $VISIONATLAS_REGISTRY or the user data dir)",
    )
    common.add_argument("--json", action="store_true", help="print JSON")
    common.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=seconds,
        default=None,
        help="how long to wait for another process's write to finish (default: 60)",
    )

    p = actions.add_parser(
        "list", parents=[common], help="list model versions", description="List model versions."
    )
    p.add_argument(
        "pattern",
        nargs="?",
        metavar="PATTERN",
        help="glob over names; without wildcards it matches as a substring",
    )
    p.add_argument(
        "--tag", action="append", metavar="TAG", help="only versions with this tag (repeatable)"
    )
    p.set_defaults(handler=_cmd_registry_list)

    p = actions.add_parser(
        "show",
        parents=[common],
        help="show one model version",
        description="Show a model version: build info, metrics, tags, weights.",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("version", nargs="?", default="latest", metavar="VERSION")
    p.set_defaults(handler=_cmd_registry_show)

    p = actions.add_parser(
        "delete",
        parents=[common],
        help="delete one model version",
        description="Delete a model version (and its weight file unless another version "
        "shares it).",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("version", metavar="VERSION")
    p.set_defaults(handler=_cmd_registry_delete)
