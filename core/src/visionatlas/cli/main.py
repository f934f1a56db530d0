"""The ``visionatlas`` command line: browse the catalog and run a demo of every task.

``list``, ``backbones`` and ``plugins`` read metadata only and import neither torch nor
pydantic; ``show --schema`` imports pydantic and ``demo`` imports torch. Each command group
lives in its own module (:mod:`~visionatlas.cli.browse`, :mod:`~visionatlas.cli.demo`,
:mod:`~visionatlas.cli.registry`, :mod:`~visionatlas.cli.export`); this one assembles the
parser, runs plugin commands and turns errors into exit codes.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NoReturn

from visionatlas import __version__
from visionatlas.catalog import Catalog, get_catalog
from visionatlas.cli._common import EXIT_FAILURE, EXIT_USAGE, PROG
from visionatlas.cli.browse import add_browse_parsers
from visionatlas.cli.demo import add_demo_parser
from visionatlas.cli.export import add_export_parser
from visionatlas.cli.registry import add_registry_parser
from visionatlas.errors import UnknownNameError, VisionAtlasError
from visionatlas.inputs import checking_inputs
from visionatlas.specs import CommandSpec

__all__ = ["build_parser", "main"]


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
    add_browse_parsers(sub)
    add_demo_parser(sub)
    add_registry_parser(sub)
    add_export_parser(sub)

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
