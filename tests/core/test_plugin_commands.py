"""Plugin subcommands (`visionatlas NAME ...`) from the `visionatlas_register_commands` hook."""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from visionatlas import Catalog, hookimpl, use_catalog
from visionatlas.cli import main
from visionatlas.errors import PluginError
from visionatlas.plugins.registrar import Registrar
from visionatlas.specs import CommandSpec


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _echo_configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("words", nargs="+")
    parser.add_argument("--upper", action="store_true")
    parser.set_defaults(handler=_echo)


def _echo(args: argparse.Namespace) -> int:
    text = " ".join(args.words)
    print(text.upper() if args.upper else text)
    return 3 if "fail" in args.words else 0


def _no_handler_configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--flag", action="store_true")


class EchoPlugin:
    @hookimpl
    def visionatlas_register_commands(self, registrar: Registrar) -> None:
        registrar.add_command(
            CommandSpec(name="echo", help="print words", configure=_echo_configure)
        )
        registrar.add_command(CommandSpec(name="bare", configure=_no_handler_configure))
        registrar.add_command(
            CommandSpec(name="missing", configure="visionatlas_no_such_module.cli:configure")
        )


@pytest.fixture
def echo_catalog() -> Iterator[Catalog]:
    catalog = Catalog(builtins=False, entry_points=False, plugins=[EchoPlugin()])
    with use_catalog(catalog):
        yield catalog


def test_plugin_command_gets_its_own_parser_and_exit_code(
    echo_catalog: Catalog, capsys: pytest.CaptureFixture[str]
) -> None:
    assert [c.name for c in echo_catalog.commands()] == ["bare", "echo", "missing"]
    assert run(capsys, "echo", "hello", "world") == (0, "hello world\n", "")
    assert run(capsys, "-q", "echo", "--upper", "hi") == (0, "HI\n", "")
    code, out, _ = run(capsys, "echo", "please", "fail")
    assert (code, out) == (3, "please fail\n")


def test_plugin_command_usage_errors_and_help(
    echo_catalog: Catalog, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "echo")  # `words` is required by the plugin's parser
    assert code == 2
    assert "visionatlas echo" in err
    assert "words" in err
    code, out, _ = run(capsys, "echo", "--help")
    assert code == 0
    assert "usage: visionatlas echo" in out
    code, _, err = run(capsys, "bare")  # the plugin set no handler: usage, exit 2
    assert code == 2
    assert "usage: visionatlas bare" in err


def test_main_help_lists_plugin_commands_with_their_plugin(
    echo_catalog: Catalog, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "echo" in out
    assert "print words [plugin EchoPlugin" in " ".join(out.split())


def test_plugin_command_that_cannot_load_fails_clearly(
    echo_catalog: Catalog, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "missing")
    assert code == 1
    assert out == ""
    assert "command 'missing' configure" in err
    assert "visionatlas_no_such_module" in err


def test_builtin_command_names_are_reserved() -> None:
    class Squatter:
        @hookimpl
        def visionatlas_register_commands(self, registrar: Registrar) -> None:
            registrar.add_command(CommandSpec(name="list", configure=_echo_configure))

    catalog = Catalog(builtins=False, entry_points=False)
    with pytest.raises(PluginError, match="'list' is a built-in visionatlas command"):
        catalog.register_plugin(Squatter())
    assert catalog.commands() == []


def test_installed_plugin_command_runs_through_entry_point(
    third_party_catalog: Catalog, capsys: pytest.CaptureFixture[str]
) -> None:
    report = next(r for r in third_party_catalog.list_plugins() if r.name == "toy")
    assert report.registered["command"] == ["toy"]
    code, out, _ = run(capsys, "toy", "info", "--channels")
    assert code == 0
    assert "toy_cnn: 25688 parameters" in out
    assert "channels: 16,24,32,48" in out


def test_installed_plugin_command_in_a_subprocess(fixture_plugins_dir: Path) -> None:
    import subprocess

    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(fixture_plugins_dir)!r})
        from visionatlas.cli import main
        sys.exit(main(["-q", "toy", "info"]))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "toy_cnn: 25688 parameters" in result.stdout
