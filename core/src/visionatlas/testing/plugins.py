"""Catalogs for tests, and :func:`check_plugin`: did a plugin load, and does it keep its word."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from visionatlas.catalog import Catalog, get_catalog, use_catalog
from visionatlas.plugins.registrar import PluginReport
from visionatlas.testing._common import CheckFailed
from visionatlas.testing.architectures import check_architecture
from visionatlas.testing.backbones import check_backbone

__all__ = ["check_plugin", "isolated_catalog"]


@contextmanager
def isolated_catalog(
    *plugins: object, builtins: bool = True, entry_points: bool = False
) -> Iterator[Catalog]:
    """A catalog holding only ``plugins`` (plus built-ins), process-wide inside the block.

    ``plugins`` are modules or objects with ``@hookimpl`` functions, registered after the
    built-ins (and after entry points when ``entry_points=True``) in the order given.
    """
    catalog = Catalog(builtins=builtins, entry_points=entry_points, plugins=plugins)
    with use_catalog(catalog):
        yield catalog


def _report(name: str, catalog: Catalog) -> PluginReport:
    reports = catalog.list_plugins()
    for report in reports:
        if report.name == name:
            return report
    by_distribution = [r for r in reports if r.distribution == name]
    if len(by_distribution) == 1:
        return by_distribution[0]
    known = ", ".join(r.name for r in reports) or "none"
    raise CheckFailed(f"no plugin named {name!r} was discovered; discovered plugins: {known}")


def check_plugin(name: str, catalog: Catalog | None = None, *, deep: bool = False) -> PluginReport:
    """Check that plugin ``name`` (entry-point or distribution name) loaded cleanly.

    Fails if the plugin is unknown, was not loaded, reported any problem other than a
    warning (a slow hook, which depends on the machine), or registered nothing. With
    ``deep=True`` it then builds what the plugin registered, running
    :func:`check_backbone` on every backbone and :func:`check_architecture` (with its
    defaults) on every architecture, and fails once, listing every check that failed.
    Each model is built and run, so a deep check of a plugin with many large architectures
    takes a while; the default checks only the report. Returns the plugin's report.
    """
    catalog = catalog or get_catalog()
    report = _report(name, catalog)
    title = f"plugin {report.name!r}"
    if report.distribution is not None:
        title += f" ({report.distribution} {report.version})"
    if report.status != "ok" or report.errors:
        problems = "".join(f"\n  - {problem}" for problem in report.problems) or " (none)"
        raise CheckFailed(f"{title} has status {report.status!r}; problems:{problems}")
    if not any(report.registered.values()):
        raise CheckFailed(
            f"{title} loaded but registered nothing: do its hooks call registry.add_*(...)?"
        )
    if deep:
        failures = _deep_failures(report, catalog)
        if failures:
            listed = "".join(f"\n  - {failure}" for failure in failures)
            raise CheckFailed(
                f"{title}: {len(failures)} of its backbones and architectures fail their "
                f"contract checks:{listed}"
            )
    return report


def _deep_failures(report: PluginReport, catalog: Catalog) -> list[str]:
    """Run the backbone and architecture checks over what ``report`` registered."""
    failures: list[str] = []
    for backbone in report.registered.get("backbone", []):
        try:
            check_backbone(backbone, catalog=catalog)
        except CheckFailed as err:
            failures.append(str(err))
        except Exception as err:  # a bug the checks did not foresee: report it, go on
            failures.append(f"backbone {backbone!r}: {type(err).__name__}: {err}")
    for label in report.registered.get("architecture", []):
        task, _, architecture = label.partition("/")
        try:
            check_architecture(task, architecture, catalog=catalog)
        except CheckFailed as err:
            failures.append(str(err))
        except Exception as err:
            failures.append(f"{label}: {type(err).__name__}: {err}")
    return failures
