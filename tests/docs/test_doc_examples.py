"""Every example in the README and docs/ runs, page by page, and shown output is checked.

The blocks of one page run in order in one namespace (a later block may use what an earlier
one defined), in a fresh working directory, offline, with a fresh catalog:

- ```` ```python ```` blocks are executed; they must not raise.
- ```` ```pycon ```` blocks are doctests: each ``>>>`` statement runs in the page's
  namespace and what it prints or evaluates to is compared with the lines under it, with
  ``ELLIPSIS`` (``...`` stands for any text, line breaks included) and
  ``NORMALIZE_WHITESPACE`` (any run of whitespace equals any other). An example that shows
  output uses this form, so the output cannot drift from the code.
- ```` ```console ```` blocks that show output are run: each ``$ visionatlas ARGS`` line
  runs ``visionatlas.cli.main(ARGS)`` in the page's environment and working directory, with
  a freshly discovered catalog as a new process would have, and its stdout and stderr
  together are compared with the lines under it (up to the next ``$`` line). A line that is
  only ``...`` stands for any number of lines, ``...`` inside a line for any text on that
  line, and a run of blanks for any run of blanks (so a table may be wider than shown);
  trailing whitespace and trailing blank lines are ignored, everything else must match.
  A console block that shows only commands is a list of commands to try and is not run;
  one that shows the output of anything other than ``visionatlas`` must be skipped.

An HTML comment right before a block changes what happens to it:

- ``<!-- doc-test: skip (reason) -->``: not run; the reason says why (few should need it:
  downloads, a GPU, long training);
- ``<!-- doc-test: file PATH -->``: written to ``PATH`` (of any language) instead of run. A
  page that writes a ``pyproject.toml`` this way describes a package: it is installed (as a
  real distribution, found through its entry points) before the page's other blocks run,
  and the tests it wrote under ``tests/`` are run with pytest;
- ``<!-- doc-test: env NAME=VALUE -->``: the variable is set, and the catalog rediscovers
  plugins, before the block runs.
"""

from __future__ import annotations

import contextlib
import difflib
import doctest
import io
import os
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from visionatlas import set_catalog

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
_BLOCK = re.compile(
    r"(?:<!--\s*doc-test:\s*(?P<action>skip|file|env)\s*(?P<argument>[^>]*?)\s*-->\s*\n)?"
    r"^(?P<indent>[ \t]*)```(?P<language>[\w-]*)\n(?P<code>.*?)\n(?P=indent)```",
    re.DOTALL | re.MULTILINE,
)
_DOCTEST_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@dataclass(frozen=True)
class Block:
    line: int
    language: str
    code: str
    action: str | None
    argument: str


@dataclass(frozen=True)
class Command:
    line: str
    expected: list[str]


def _blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    return [
        Block(
            line=text.count("\n", 0, match.start("code")) + 1,
            language=match.group("language"),
            code=textwrap.dedent(match.group("code")),  # blocks nested in list items
            action=match.group("action"),
            argument=match.group("argument") or "",
        )
        for match in _BLOCK.finditer(text)
    ]


def _commands(block: Block) -> list[Command]:
    """The ``$`` lines of a console block, each with the output lines shown under it."""
    commands: list[Command] = []
    for line in block.code.splitlines():
        if line.startswith("$ "):
            commands.append(Command(line[2:].rstrip(), []))
        elif commands and not commands[-1].expected and commands[-1].line.endswith("\\"):
            commands[-1] = Command(f"{commands[-1].line[:-1]} {line.strip()}", [])
        elif commands:
            commands[-1].expected.append(line)
    return commands


def _shows_output(block: Block) -> bool:
    shown = (line for command in _commands(block) for line in command.expected)
    return block.language == "console" and any(line.strip() for line in shown)


def _runs(block: Block) -> bool:
    if block.action not in (None, "env"):
        return False
    return block.language in ("python", "pycon") or _shows_output(block)


def _pages_with_examples() -> list[Path]:
    return [page for page in PAGES if any(_runs(b) for b in _blocks(page))]


def _install(project: Path, target: Path) -> None:
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
        "--no-index", "--disable-pip-version-check", "--target", str(target), str(project),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"installing the page's package failed:\n{result.stderr}"


def _run_package_tests(project: Path, site: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project / "tests")],
        capture_output=True,
        text=True,
        cwd=project,
        env=env,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"the page's own tests failed:\n{result.stdout[-4000:]}"


def _run_python(block: Block, where: str, namespace: dict[str, object]) -> None:
    compiled = compile(block.code, where, "exec")
    try:
        exec(compiled, namespace)
    except Exception as err:
        pytest.fail(f"the example at {where} failed: {type(err).__name__}: {err}")


def _run_pycon(block: Block, page: Path, where: str, namespace: dict[str, object]) -> None:
    test = doctest.DocTestParser().get_doctest(
        block.code, namespace, where, str(page), block.line - 1
    )
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=_DOCTEST_FLAGS)
    result = runner.run(test, out=report.append, clear_globs=False)
    if result.failed:
        pytest.fail(f"the example at {where} does not show what it does:\n{''.join(report)}")


def _visionatlas(argv: list[str]) -> str:
    """Run the command line in this process, as a new process would; return what it printed."""
    from visionatlas.cli import main

    output = io.StringIO()
    previous = set_catalog(None)
    try:
        with (
            contextlib.redirect_stdout(output),
            contextlib.redirect_stderr(output),
            contextlib.suppress(SystemExit),  # the exit code is not what the page shows
        ):
            main(argv)
    finally:
        set_catalog(previous)
    return output.getvalue()


def _output_pattern(expected: list[str]) -> re.Pattern[str]:
    """A line ``...``: any lines; ``...`` in a line: any text; a run of blanks: any blanks."""
    parts = []
    for line in expected:
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
            continue
        texts = line.rstrip().split("...")
        parts.append(
            ".*?".join(r"[ \t]+".join(map(re.escape, re.split(r"[ \t]+", t))) for t in texts)
        )
        parts.append(r"\n")
    return re.compile("".join(parts))


def _normalized(lines: list[str]) -> list[str]:
    lines = [line.rstrip() for line in lines]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _run_console(block: Block, where: str) -> None:
    for command in _commands(block):
        argv = shlex.split(command.line, comments=True)
        if argv[:1] != ["visionatlas"]:
            pytest.fail(
                f"the console example at {where} shows the output of `{command.line}`; only "
                "`visionatlas` commands are run: show no output, or add "
                "<!-- doc-test: skip (reason) -->"
            )
        actual = _normalized(_visionatlas(argv[1:]).splitlines())
        expected = _normalized(command.expected)
        if not _output_pattern(expected).fullmatch("".join(f"{line}\n" for line in actual)):
            diff = "\n".join(
                difflib.unified_diff(expected, actual, "shown", "printed", lineterm="")
            )
            pytest.fail(f"`{command.line}` at {where} prints something else:\n{diff}")


@pytest.mark.parametrize(
    "page", _pages_with_examples(), ids=lambda p: str(p.relative_to(ROOT)).replace("/", "-")
)
def test_page_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VISIONATLAS_OFFLINE", "1")
    monkeypatch.setenv("VISIONATLAS_REGISTRY", str(tmp_path / "registry"))
    monkeypatch.setenv("VISIONATLAS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    blocks = _blocks(page)
    project = tmp_path / "project"
    for block in blocks:
        if block.action == "file":
            path = project / block.argument
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.code + "\n", encoding="utf-8")
    if (project / "pyproject.toml").exists():
        site = tmp_path / "site"
        _install(project, site)
        monkeypatch.syspath_prepend(str(site))
        if (project / "tests").is_dir():
            _run_package_tests(project, site)
    namespace: dict[str, object] = {"__name__": f"doc_example_{page.stem}"}
    for block in blocks:
        if not _runs(block):
            continue
        if block.action == "env":
            name, _, value = block.argument.partition("=")
            monkeypatch.setenv(name.strip(), value.strip())
            set_catalog(None)
        where = f"{page.relative_to(ROOT)}:{block.line}"
        if block.language == "python":
            _run_python(block, where, namespace)
        elif block.language == "pycon":
            _run_pycon(block, page, where, namespace)
        else:
            _run_console(block, where)


def test_skipped_examples_say_why() -> None:
    unexplained = [
        f"{page.relative_to(ROOT)}:{block.line}"
        for page in PAGES
        for block in _blocks(page)
        if block.action == "skip" and not re.fullmatch(r"\(.{10,}\)", block.argument)
    ]
    assert not unexplained, f"doc-test: skip needs a reason in parentheses: {unexplained}"


@pytest.mark.parametrize(
    ("expected", "printed", "matches"),
    [
        (["a  b", "c"], ["a  b", "c"], True),
        (["a  b", "c"], ["a b", "c"], True),
        (["a  b", "c"], ["ab", "c"], False),
        (["  a"], ["a"], False),
        (["a", "...", "d"], ["a", "b", "c", "d"], True),
        (["a", "...", "d"], ["a", "d"], True),
        (["a", "..."], ["a", "b", "c"], True),
        (["a", "..."], ["x", "b"], False),
        (["took ... ms"], ["took 12.5 ms"], True),
        (["took ... ms"], ["took 12.5 ms", "more"], False),
    ],
)
def test_console_output_comparison(expected: list[str], printed: list[str], matches: bool) -> None:
    text = "".join(f"{line}\n" for line in printed)
    assert bool(_output_pattern(expected).fullmatch(text)) is matches
