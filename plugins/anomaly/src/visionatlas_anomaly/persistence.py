"""Saving and loading fitted detectors: safetensors for tensors, JSON for the rest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from visionatlas_anomaly.config import UninformedStudentsConfig
from visionatlas_anomaly.model import FORMAT, UninformedStudents

__all__ = ["load_detector", "save_detector"]

TENSORS = "model.safetensors"
METADATA = "config.json"
_HEADER_KEY = "visionatlas"


def save_detector(detector: UninformedStudents, path: Path) -> Path:
    """Write ``detector`` to ``path``: a ``.safetensors`` file, else a directory."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in detector.state_dict().items()}
    metadata = detector.metadata()
    if path.suffix == ".safetensors":
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata={_HEADER_KEY: json.dumps(metadata)})
        return path
    if path.exists() and not path.is_dir():
        raise FileExistsError(
            f"{path} exists and is not a directory; pass a directory or a "
            "path ending in .safetensors"
        )
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / TENSORS))
    (path / METADATA).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return path


def _read(path: Path) -> tuple[dict[str, Any], Path]:
    if path.is_dir():
        meta_file, tensor_file = path / METADATA, path / TENSORS
        missing = [str(f) for f in (meta_file, tensor_file) if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"{path} is not a saved detector: missing {', '.join(missing)}")
        return json.loads(meta_file.read_text(encoding="utf-8")), tensor_file
    if path.is_file():
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        if _HEADER_KEY not in header:
            raise ValueError(f"{path} is a safetensors file without detector metadata")
        return json.loads(header[_HEADER_KEY]), path
    raise FileNotFoundError(f"no saved detector at {path} (expected a directory or .safetensors)")


def load_detector(path: Path, *, device: str | None = None) -> UninformedStudents:
    """Rebuild a detector saved by :func:`save_detector`."""
    metadata, tensor_file = _read(path)
    if metadata.get("format") != FORMAT:
        raise ValueError(
            f"{path} has format {metadata.get('format')!r}; this version reads {FORMAT!r} "
            "only (fit the detector again with this version to get a file it can load)"
        )
    settings = dict(metadata["config"])
    if device is not None:
        settings["device"] = device
    config = UninformedStudentsConfig.model_validate(settings)
    detector = UninformedStudents(config)
    detector.load_state_dict(load_file(str(tensor_file), device="cpu"))
    detector.threshold = metadata.get("threshold")
    detector.teacher_source = metadata.get("teacher_source")
    return detector.to(config.device).eval()
