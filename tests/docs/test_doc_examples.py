"""Every ```python example in the README and docs/ runs, page by page.

The blocks of one page run in order in one namespace (a later block may use what an earlier
one defined), in a fresh working directory, offline, with a fresh catalog. An HTML comment
right before a block changes what happens to it:

- ``<!-- doc-test: skip (reason) -->``: not run; the reason says why (few should need it);
- ``<!-- doc-test: file PATH -->``: written to ``PATH`` (of any language) instead of run. A
  page that writes a ``pyproject.toml`` this way describes a package: it is installed (as a
  real distribution, found through its entry points) before the page's other blocks run,
  and the tests it wrote under ``tests/`` are run with pytest;
- ``<!-- doc-test: env NAME=VALUE -->``: the variable is set, and the catalog rediscovers
  plugins, before the block runs.
"""

from __future__ import annotations

import os
import re
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


@dataclass(frozen=True)
class Block:
    line: int
    language: str
    code: str
    action: str | None
    argument: str


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


def _runs(block: Block) -> bool:
    return block.language == "python" and block.action in (None, "env")


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
        compiled = compile(block.code, where, "exec")
        try:
            exec(compiled, namespace)
        except Exception as err:
            pytest.fail(f"the example at {where} failed: {type(err).__name__}: {err}")


def test_skipped_examples_say_why() -> None:
    unexplained = [
        f"{page.relative_to(ROOT)}:{block.line}"
        for page in PAGES
        for block in _blocks(page)
        if block.action == "skip" and not re.fullmatch(r"\(.{10,}\)", block.argument)
    ]
    assert not unexplained, f"doc-test: skip needs a reason in parentheses: {unexplained}"
