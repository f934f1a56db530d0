"""The manifest of timm backbones: read without importing torch or timm.

The plugin ships ``manifest.json``, generated from the pinned timm version by
``python -m visionatlas_timm.generate``. When the installed timm is another version, a
manifest for it is generated once into the cache folder (``cache_dir("timm")``) and used
from then on, so listings never describe models the installed timm builds differently.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from visionatlas.cache import cache_dir

__all__ = [
    "FORMAT",
    "MANIFEST_FILE",
    "Entry",
    "Manifest",
    "installed_timm_version",
    "load_manifest",
    "manifest_for_installed_timm",
    "write_manifest",
]

FORMAT = 1
MANIFEST_FILE = "manifest.json"
logger = logging.getLogger("visionatlas")


@dataclass(frozen=True)
class Entry:
    """One timm model that produces features: what the catalog lists for it."""

    name: str
    family: str
    num_params: int
    pre_logits_dim: int
    levels: tuple[tuple[str, int, int, int], ...]  # (level name, channels, stride, index)
    input_size: int
    fixed_input_size: bool
    min_input_size: int
    tags: tuple[str, ...]
    default_tag: str
    license: str


@dataclass(frozen=True)
class Manifest:
    timm_version: str
    torch_version: str
    generated: str
    entries: tuple[Entry, ...]
    skipped: dict[str, str]
    path: str


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest`` (its ``models`` are :class:`Entry` objects) atomically."""
    data = {**manifest, "models": [asdict(entry) for entry in manifest["models"]]}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump(data, file, separators=(",", ":"), sort_keys=True)
        file.write("\n")
    os.chmod(partial, 0o644)
    os.replace(partial, path)


def load_manifest(path: Path | None = None) -> Manifest:
    """Read a manifest file (default: the one shipped with the plugin)."""
    if path is None:
        text = resources.files(__package__).joinpath(MANIFEST_FILE).read_text("utf-8")
        where = f"{__package__}/{MANIFEST_FILE}"
    else:
        text, where = Path(path).read_text("utf-8"), str(path)
    data = json.loads(text)
    if data.get("format") != FORMAT:
        raise ValueError(f"{where} has manifest format {data.get('format')!r}, not {FORMAT}")
    entries = tuple(
        Entry(
            **{
                **row,
                "levels": tuple(tuple(level) for level in row["levels"]),
                "tags": tuple(row["tags"]),
            }
        )
        for row in data["models"]
    )
    return Manifest(
        timm_version=data["timm_version"],
        torch_version=data["torch_version"],
        generated=data["generated"],
        entries=entries,
        skipped=dict(data["skipped"]),
        path=where,
    )


def installed_timm_version() -> str | None:
    """The installed timm's version from its metadata (timm itself is not imported)."""
    try:
        return metadata.version("timm")
    except metadata.PackageNotFoundError:
        return None


def manifest_for_installed_timm() -> Manifest:
    """The shipped manifest if it matches the installed timm, else one generated for it."""
    shipped = load_manifest()
    installed = installed_timm_version()
    if installed is None or installed == shipped.timm_version:
        return shipped
    cached = cache_dir("timm") / f"manifest-timm-{installed}.json"
    if cached.is_file():
        try:
            return load_manifest(cached)
        except (ValueError, KeyError, TypeError, json.JSONDecodeError):
            logger.warning("visionatlas-timm: %s is damaged; generating it again", cached)
    print(
        f"visionatlas-timm: the installed timm is {installed}, but the shipped manifest "
        f"describes timm {shipped.timm_version}; describing every timm model once for "
        f"{installed} into {cached} (a few minutes, only this once)",
        file=sys.stderr,
    )
    jobs = str(max(1, min(8, os.cpu_count() or 1)))
    command = [sys.executable, "-m", "visionatlas_timm.generate", "--out", str(cached)]
    result = subprocess.run([*command, "--jobs", jobs], check=False)
    if result.returncode != 0 or not cached.is_file():
        raise RuntimeError(
            f"describing the models of timm {installed} into {cached} failed (exit "
            f"{result.returncode}); no timm backbones are listed rather than ones described "
            f"for timm {shipped.timm_version}. Install timm=={shipped.timm_version}, or run "
            f"'python -m visionatlas_timm.generate --out {cached}' to see the error"
        )
    return load_manifest(cached)
