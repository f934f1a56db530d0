"""Saving and loading fitted detectors: safetensors for tensors, JSON for the rest."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from safetensors.torch import load_file, save_file
from torch import Tensor

from visionatlas.models.deferred_init import construct_and_load
from visionatlas_anomaly.config import UninformedStudentsConfig, validation_summary
from visionatlas_anomaly.devices import resolve_device
from visionatlas_anomaly.errors import DetectorFileError, NonFiniteError, UnknownImageSizeWarning
from visionatlas_anomaly.model import FIT_STATE_KEYS, FORMAT, LEGACY_FORMATS, UninformedStudents
from visionatlas_anomaly.preprocessing import Preprocessing

__all__ = ["load_detector", "save_detector"]

TENSORS = "model.safetensors"
METADATA = "config.json"
_HEADER_KEY = "visionatlas"


def _non_finite(tensors: dict[str, Tensor]) -> list[str]:
    return sorted(k for k, v in tensors.items() if v.is_floating_point() and not v.isfinite().all())


def save_detector(detector: UninformedStudents, path: Path) -> Path:
    """Write ``detector`` to ``path``: a ``.safetensors`` file, else a directory.

    Refuses (:class:`~visionatlas_anomaly.errors.NonFiniteError`) a NaN or infinite
    threshold or tensor.
    """
    tensors = {k: v.detach().cpu().contiguous() for k, v in detector.state_dict().items()}
    threshold = detector.threshold
    if threshold is not None and not math.isfinite(threshold):
        raise NonFiniteError(f"refusing to save a detector whose threshold is {threshold}")
    bad = _non_finite(tensors)
    if bad:
        raise NonFiniteError(
            f"refusing to save a detector with NaN or infinite values in {', '.join(bad)}"
        )
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
    """Rebuild a detector saved by :func:`save_detector`.

    ``device`` (default: the saved one) must be usable here, else
    :class:`~visionatlas_anomaly.errors.DeviceError`. A NaN or infinite threshold or
    tensor, or an invalid config or preprocessing, raises
    :class:`~visionatlas_anomaly.errors.DetectorFileError`. Files of format 2 (no stored
    preprocessing) load with a :class:`~visionatlas_anomaly.errors.UnknownImageSizeWarning`.
    """
    metadata, tensor_file = _read(path)
    form = metadata.get("format")
    if form != FORMAT and form not in LEGACY_FORMATS:
        raise ValueError(
            f"{path} has format {form!r}; this version reads {FORMAT!r} and "
            f"{', '.join(map(repr, LEGACY_FORMATS))} only (fit the detector again with this "
            "version to get a file it can load)"
        )
    if device is not None:
        resolve_device(device)
    settings = dict(metadata["config"])
    if device is not None:
        settings["device"] = device
    try:
        config = UninformedStudentsConfig.model_validate(settings)
    except ValidationError as err:
        raise DetectorFileError(
            f"{path} holds an invalid config: {validation_summary(err)}"
        ) from err
    target = resolve_device(
        config.device, hint=" (the saved device; pass device='cpu' or --device cpu)"
    )
    tensors = load_file(str(tensor_file), device="cpu")
    bad = _non_finite(tensors)
    if bad:
        raise DetectorFileError(f"{path} is damaged: NaN or infinite values in {', '.join(bad)}")
    legacy = form in LEGACY_FORMATS

    def load(detector: UninformedStudents) -> None:
        if legacy:  # the fit state comes from the metadata alone
            detector.load_state_dict(tensors, strict=False)
            missing = sorted(set(detector.state_dict()) - set(tensors) - set(FIT_STATE_KEYS))
            unexpected = sorted(set(tensors) - set(detector.state_dict()))
            if missing or unexpected:
                raise DetectorFileError(
                    f"{path} does not match its config: missing {missing}, unexpected {unexpected}"
                )
            return
        try:
            detector.load_state_dict(tensors)
        except (RuntimeError, ValueError) as err:
            raise DetectorFileError(f"{path} does not match its config: {err}") from err

    # the networks' random initialisation is skipped: the file replaces every weight
    detector = construct_and_load(lambda: UninformedStudents(config), load)
    stored = (detector.threshold, detector.image_size)
    threshold = metadata.get("threshold")
    try:
        detector.threshold = threshold
    except (TypeError, NonFiniteError) as err:
        raise DetectorFileError(
            f"{path} has threshold {threshold!r}; a saved detector's threshold must be a "
            "finite number (or null when unfitted)"
        ) from err
    raw = metadata.get("preprocessing")
    if raw is not None:
        try:
            detector.preprocessing = Preprocessing.model_validate(raw)
        except ValidationError as err:
            raise DetectorFileError(
                f"{path} holds invalid preprocessing: {validation_summary(err)}"
            ) from err
    elif detector.fitted:
        warnings.warn(
            f"{path} does not record the image size the detector was fitted at (saved before "
            "format 3); images are scored at their own size, so "
            "give it images of its training size",
            UnknownImageSizeWarning,
            stacklevel=3,
        )
    if not legacy and (detector.threshold, detector.image_size) != stored:
        raise DetectorFileError(
            f"{path} is inconsistent: its tensors hold threshold {stored[0]} and image size "
            f"{stored[1]}, its metadata threshold {detector.threshold} and image size "
            f"{detector.image_size}"
        )
    detector.teacher_source = metadata.get("teacher_source")
    return detector.to(target).eval()
