"""A griffe extension: Sphinx roles in docstrings become cross-references on the site.

The core's docstrings name other objects the Sphinx way (``:func:`create_model```,
``:class:`~visionatlas.BuildInfo```). mkdocstrings renders Markdown, where such a role shows
as raw text. This rewrites each role into an optional autorefs reference: a link where the
target is rendered somewhere on the site, plain code where it is not (a private helper, a
torch function), never a broken link. ``~`` shows only the last part of the name, as in
Sphinx. The sources are not changed.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:func|class|meth|attr|mod|exc|data|obj):`(?P<tilde>~?)(?P<target>[\w.]+)`")


def _resolve(obj: griffe.Object, loader: griffe.GriffeLoader, target: str) -> str | None:
    """The canonical path of ``target`` seen from ``obj``'s scope, or None."""
    head, _, rest = target.partition(".")
    candidates = []
    with contextlib.suppress(griffe.NameResolutionError):
        candidates.append(obj.resolve(head) + (f".{rest}" if rest else ""))
    candidates.append(target)
    for path in candidates:
        try:
            found = loader.modules_collection.get_member(path)
        except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            continue
        try:
            return str(found.final_target.path if found.is_alias else found.path)
        except (griffe.AliasResolutionError, griffe.CyclicAliasError):
            continue
    return None


class SphinxRoles(griffe.Extension):
    """Rewrite ``:role:`target``` in every docstring of the package."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        self._visit(pkg, loader, seen=set())

    def _visit(self, obj: griffe.Object, loader: griffe.GriffeLoader, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        docstring = obj.docstring
        if docstring is not None:
            docstring.value = _ROLE.sub(lambda m: self._reference(obj, loader, m), docstring.value)
        for member in obj.members.values():
            if not member.is_alias:
                self._visit(member, loader, seen)

    @staticmethod
    def _reference(obj: griffe.Object, loader: griffe.GriffeLoader, match: re.Match[str]) -> str:
        target = match["target"]
        shown = target.rsplit(".", 1)[-1] if match["tilde"] else target
        path = _resolve(obj, loader, target) or target
        return f'<autoref identifier="{path}" optional><code>{shown}</code></autoref>'
