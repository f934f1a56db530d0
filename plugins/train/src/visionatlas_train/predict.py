"""``predict``: a trained model's predictions on image files, written for people and programs.

The model comes from a run folder (its best checkpoint), a checkpoint directory or a
registered ``NAME[@VERSION]``, as for :func:`~visionatlas_train.evaluate`; the task writes
the files (``write_predictions`` of its :class:`~visionatlas.TaskTraining`: COCO JSON and
overlays for detectors, mask PNGs and overlays for semantic segmentation).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionatlas.catalog import Catalog, get_catalog
from visionatlas.training.protocol import PredictRequest
from visionatlas_train.engine import TrainError, custom_fit_run, load_source

if TYPE_CHECKING:
    from visionatlas.lifecycle.versioning.store import ModelRegistry

__all__ = ["PredictionResult", "predict"]


@dataclass(frozen=True)
class PredictionResult:
    """What :func:`predict` wrote: the folder, the task's summary and the model's source."""

    out: Path
    task: str
    source: str
    summary: dict[str, Any]


def _image_files(images: Sequence[str | os.PathLike[str]]) -> list[Path]:
    from visionatlas.training.images import list_images

    found: list[Path] = []
    for item in images:
        path = Path(item)
        if path.is_dir():
            inside = list_images(path)
            if not inside:
                raise TrainError(f"{path} holds no image")
            found.extend(inside)
        elif path.is_file():
            found.append(path)
        else:
            raise TrainError(f"{path}: no such image file or folder")
    if not found:
        raise TrainError("give at least one image file or folder to predict on")
    return found


def _names(paths: Sequence[Path]) -> tuple[str, ...]:
    """Unique output stems: the file's stem, then ``stem-2``, ... where stems repeat."""
    seen: dict[str, int] = {}
    names = []
    for path in paths:
        count = seen.get(path.stem, 0) + 1
        seen[path.stem] = count
        names.append(path.stem if count == 1 else f"{path.stem}-{count}")
    return tuple(names)


def predict(
    source: Any,
    images: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    score_threshold: float = 0.5,
    batch_size: int | None = None,
    device: str = "cpu",
    registry: ModelRegistry | str | os.PathLike[str] | None = None,
    catalog: Catalog | None = None,
) -> PredictionResult:
    """Run the trained model of ``source`` on ``images`` (files or folders of them) and
    write its predictions into ``out``, a new or empty folder (nothing is overwritten)."""
    if not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"score_threshold must be between 0 and 1, got {score_threshold}")
    target = Path(out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise TrainError(f"{target} exists and is not an empty folder; predict into a new one")
    paths = _image_files(images)
    catalog = catalog or get_catalog()
    custom = custom_fit_run(source, catalog)
    if custom is not None:
        task = str(custom[2]["task"])
        raise TrainError(
            f"the run in {custom[1]} is a {task} run, which trains with its own fit; its "
            f"plugin's own command predicts (visionatlas anomaly predict for anomaly_detection)"
        )
    model, task, labels, stored, description = load_source(source, registry, catalog)
    training = catalog.load_training(task)
    writer = getattr(training, "write_predictions", None)
    if writer is None:
        raise TrainError(f"{task} models cannot write predictions files (its plugin has none)")
    size = stored.get("input_size") or (224, 224)
    request = PredictRequest(
        out=target,
        labels=tuple(labels),
        input_size=(int(size[0]), int(size[1])),
        score_threshold=score_threshold,
        device=device,
        batch_size=batch_size or int(stored.get("batch_size") or 4),
        names=_names(paths),
    )
    target.mkdir(parents=True, exist_ok=True)
    summary = dict(writer(model, paths, request))
    return PredictionResult(out=target, task=task, source=description, summary=summary)
