"""Runs of tasks that train with their own fit (a :class:`~visionatlas.CustomFitTraining`).

Some methods are not a loss over batches under one optimizer: Uninformed Students trains
teachers, then students against them, then calibrates a threshold. Forcing such a fit into
Lightning's per-batch loop would distort it, so the engine hands it the model and the data
and keeps everything around the fit the same as for every other task: the command line,
the layered and validated config, the data reading (``builtin:`` names included), one line
of errors, and a run folder a person can read::

    RUN_DIR/
      config.json        task, architecture, data, the resolved config, "fit": "custom"
      model/             the fitted model, in the task's own safe format (save_model)
      metrics.csv        one row per logged step of the fit (the task's history)
      plots/<name>.png   each logged quantity over the steps
      summary.json       the fit's final metrics and details, skipped files, duration

A setting the fit does not honour is refused when the user gave it (a config file,
``--set``, a mapping), naming it and what to use instead; catalog defaults are not "given".
The fit runs in one process on one device and is not resumed: it is all or nothing, and
the run folder is written when it has succeeded.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from visionatlas.catalog import Catalog
from visionatlas.training.protocol import CustomFitTraining, DataRequest, FitRequest
from visionatlas_train.config import (
    ConfigError,
    TrainConfig,
    catalog_defaults,
    parse_set,
    resolve_config,
)
from visionatlas_train.engine import (
    RUN_FORMAT,
    EvaluationResult,
    TrainError,
    TrainResult,
    _check_data,
    _check_out,
    _data_source,
    _default_run_dir,
    _now,
    _parse_register,
    _registry,
    _versions,
)
from visionatlas_train.run import CONFIG_NAME, LABELS_NAME, SUMMARY_NAME, RunFolder

if TYPE_CHECKING:
    from visionatlas.lifecycle.versioning.rows import ModelEntry
    from visionatlas.lifecycle.versioning.store import ModelRegistry

__all__ = [
    "CUSTOM_FIT",
    "EVALUATE_SETTINGS",
    "MODEL_DIR",
    "evaluate_custom",
    "explicit_settings",
    "fit_device",
    "train_custom",
]

CUSTOM_FIT = "custom"
"""The ``fit`` value of a custom fit's ``config.json``."""
MODEL_DIR = "model"
"""The folder of the run that holds the fitted model."""
EVALUATE_SETTINGS = frozenset({"accelerator", "cache_dir", "strict"})
"""What may change when a fitted run is evaluated (where it runs, how data is read)."""


def explicit_settings(
    layers: Sequence[Mapping[str, Any] | TrainConfig | None], sets: Sequence[str]
) -> frozenset[str]:
    """The top-level settings the user gave: the keys of the mappings (or the fields set
    in a :class:`TrainConfig`) and of the ``key=value`` pairs."""
    keys: set[str] = set()
    for layer in layers:
        if isinstance(layer, TrainConfig):
            keys |= set(layer.model_fields_set)
        elif layer is not None:
            keys |= {str(key) for key in layer}
    keys |= {parse_set(pair)[0][0] for pair in sets}
    return frozenset(keys)


def _refuse(
    training: CustomFitTraining,
    given: Collection[str],
    allowed: Collection[str],
    task: str,
    *,
    evaluating: bool = False,
) -> None:
    """A :class:`ConfigError` naming each given setting that is not ``allowed``."""
    refused = sorted(set(given) - set(allowed))
    if not refused:
        return
    hints = training.setting_hints
    verb = "does" if len(refused) == 1 else "do"
    if evaluating:
        reason = f"{verb} not apply when evaluating a fitted {task} model"
    else:
        reason = f"{verb} not apply to {task}, which trains with its own fit"
    notes = [f"{key}: {hints[key]}" for key in refused if key in hints and not evaluating]
    raise ConfigError(
        f"{', '.join(refused)} {reason}"
        + (f" ({'; '.join(notes)})" if notes else "")
        + f"; the settings that apply are {', '.join(sorted(allowed))}"
    )


def fit_device(accelerator: str) -> str:
    """The torch device an ``accelerator`` setting means for a one-device fit; a device
    this machine does not have is a :class:`ConfigError` (before any data is read)."""
    import torch

    if accelerator == "cpu":
        return "cpu"
    if accelerator == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    device = "mps" if accelerator == "mps" else "cuda"
    backend = torch.backends.mps if device == "mps" else torch.cuda
    if not backend.is_available():
        raise ConfigError(
            f"accelerator {accelerator} needs a {device.upper() if device == 'mps' else 'CUDA'} "
            "device, and torch sees none here; use accelerator cpu or auto"
        )
    return device


def _model_error(err: ValueError, task: str, architecture: str) -> ConfigError:
    """A model config's validation error as one line naming each ``model.`` field."""
    from pydantic import ValidationError

    if not isinstance(err, ValidationError):
        return ConfigError(f"invalid model settings for {task}/{architecture}: {err}")
    problems = []
    for problem in err.errors(include_url=False):
        where = ".".join(str(part) for part in problem["loc"])
        message = str(problem["msg"]).removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown option"
        problems.append(f"model.{where}: {message}" if where else message)
    return ConfigError(
        f"invalid model settings for {task}/{architecture}: {'; '.join(problems)} (the options: "
        f"visionatlas show {task} {architecture})"
    )


def _count(dataset: Any) -> int:
    return len(dataset) if dataset is not None else 0


def train_custom(
    training: CustomFitTraining,
    *,
    task: str,
    architecture: str,
    data: str | os.PathLike[str],
    layers: Sequence[Mapping[str, Any] | TrainConfig | None],
    sets: Sequence[str],
    catalog: Catalog,
    out: str | os.PathLike[str] | None,
    register: str | None,
    registry: ModelRegistry | str | os.PathLike[str] | None,
    callbacks: Sequence[Any],
    progress_bar: bool | None,
    verbose: bool,
    stream: TextIO | None,
) -> TrainResult:
    """:func:`~visionatlas_train.train` for a task with its own fit (see the module)."""
    if callbacks:
        raise ConfigError(
            f"callbacks are Lightning callbacks, and {task} trains with its own fit; drop them"
        )
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise ConfigError(
            f"{task} trains with its own fit, in one process; run it without a launcher"
        )
    spec = catalog.get_architecture(task, architecture)
    cfg = resolve_config(catalog_defaults(spec.hyperparameters), *layers, sets=sets)
    explicit = explicit_settings(layers, sets)
    _refuse(training, explicit, training.fit_settings, task)
    if register is not None and training.registry_refusal:
        raise ConfigError(
            f"--register {register}: a fitted {task} model cannot go into the model registry: "
            f"{training.registry_refusal}"
        )
    target = _parse_register(register)
    run_dir = Path(out) if out is not None else _default_run_dir(task, architecture)
    _check_out(run_dir, resumable=False)
    run_dir = run_dir.resolve()
    if target is not None:
        import contextlib

        with contextlib.suppress(LookupError):
            existing = _registry(registry).get(*target)
            raise TrainError(
                f"the registry already holds {existing.ref}; choose another --register version"
            )
    out_stream = stream or sys.stderr

    def log(line: str) -> None:
        print(line, file=out_stream, flush=True)

    show_progress = sys.stderr.isatty() if progress_bar is None else progress_bar
    request = FitRequest(
        config=cfg.as_json(),
        explicit=explicit,
        device=fit_device(cfg.accelerator),
        progress=show_progress and verbose,
        log=log if verbose else None,
    )
    try:
        options = training.model_config(request)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    try:
        catalog.make_config(task, architecture, options)
    except ValueError as err:
        raise _model_error(err, task, architecture) from err
    source = _data_source(data)
    prepared = training.prepare_data(
        source,
        DataRequest(
            purpose="fit",
            input_size=cfg.input_size,
            val_fraction=cfg.val_fraction,
            seed=cfg.seed,
            strict=cfg.strict,
            cache_dir=Path(cfg.cache_dir) if cfg.cache_dir else None,
            augment=cfg.augment,
        ),
    )
    _check_data(prepared, source, purpose="fit")
    model = catalog.create_model(task, architecture, options, num_classes=prepared.num_outputs)
    run_info = {
        "format": RUN_FORMAT,
        "task": task,
        "architecture": architecture,
        "data": source,
        "fit": CUSTOM_FIT,
        "num_outputs": prepared.num_outputs,
        "config": {k: v for k, v in cfg.as_json().items() if k in training.fit_settings},
        "created_at": _now(),
        "versions": _versions(),
    }
    if verbose:
        skipped = f", {len(prepared.skipped)} unreadable files skipped" if prepared.skipped else ""
        what = prepared.description or (
            f"{_count(prepared.train)} train and {_count(prepared.val)} val images"
        )
        log(f"training {task}/{architecture} on {source} with its own fit: {what}{skipped}")
        log("config: " + json.dumps(run_info["config"], separators=(", ", ": ")))
    started = time.perf_counter()
    outcome = training.fit(model, prepared, request)
    duration = time.perf_counter() - started

    _check_out(run_dir, resumable=False)  # again: another run may have started there meanwhile
    folder = RunFolder(run_dir)
    folder.write_json(CONFIG_NAME, run_info)
    if prepared.labels:
        folder.write_json(LABELS_NAME, {"task": task, "labels": list(prepared.labels)})
    saved = training.save_model(model, run_dir / MODEL_DIR)
    if outcome.history:
        folder.write_metrics(outcome.history, leading=("step",))
        folder.write_plots(outcome.history, x="step")
    summary: dict[str, Any] = {
        "task": task,
        "architecture": architecture,
        "data": source,
        "fit": CUSTOM_FIT,
        "train_images": _count(prepared.train),
        "val_images": _count(prepared.val),
        "metrics": dict(outcome.metrics),
        "details": dict(outcome.details),
        "skipped": [{"path": str(s.path), "reason": s.reason} for s in prepared.skipped],
        "duration_s": round(duration, 3),
        "model": str(saved),
        "registered": None,
    }
    entry: ModelEntry | None = None
    if target is not None:
        entry = _registry(registry).register(
            target[0],
            target[1],
            model,
            tags=("trained", task),
            metrics={
                **outcome.metrics,
                "training": {
                    "input_size": cfg.input_size,
                    "config": run_info["config"],
                    "run": str(saved),
                },
            },
            description=f"{task}/{architecture} fitted on {source}",
        )
        summary["registered"] = entry.ref
    folder.write_json(SUMMARY_NAME, summary)
    if verbose:
        closing = f"done: fitted in {duration:.1f}s"
        if outcome.headline:
            closing += f"; {outcome.headline}"
        if prepared.skipped:
            closing += f"; {len(prepared.skipped)} unreadable files skipped"
        closing += f"; run in {run_dir}"
        if entry is not None:
            closing += f"; registered {entry.ref}"
        log(closing)
    return TrainResult(
        model=model,
        metrics=dict(outcome.metrics),
        run_dir=run_dir,
        config=cfg,
        labels=list(prepared.labels),
        history=[dict(row) for row in outcome.history],
        best_epoch=None,
        epochs_completed=0,
        stopped_early=False,
        best_checkpoint=Path(saved),
        last_checkpoint=Path(saved),
        skipped=list(prepared.skipped),
        registered=entry,
        summary=summary,
    )


def evaluate_custom(
    training: CustomFitTraining,
    task: str,
    stored: Mapping[str, Any],
    load: Callable[[str], Any],
    data: str | os.PathLike[str],
    *,
    description: str,
    config: Mapping[str, Any] | None,
    sets: Sequence[str],
    progress_bar: bool | None,
) -> EvaluationResult:
    """:func:`~visionatlas_train.evaluate` of a model fitted by a task's own fit.

    ``stored`` is the fit's resolved config (the run's, or the registry entry's);
    ``load(device)`` returns the fitted model on that device.
    """
    cfg = resolve_config(stored, config, sets=sets)
    explicit = explicit_settings([config], sets)
    _refuse(
        training,
        explicit,
        EVALUATE_SETTINGS & set(training.fit_settings),
        task,
        evaluating=True,
    )
    device = fit_device(cfg.accelerator)
    model = load(device)
    source = _data_source(data)
    prepared = training.prepare_data(
        source,
        DataRequest(
            purpose="evaluate",
            input_size=cfg.input_size,
            val_fraction=cfg.val_fraction,
            seed=cfg.seed,
            strict=cfg.strict,
            cache_dir=Path(cfg.cache_dir) if cfg.cache_dir else None,
            augment="none",
        ),
    )
    _check_data(prepared, source, purpose="evaluate")
    show_progress = sys.stderr.isatty() if progress_bar is None else progress_bar
    request = FitRequest(
        config=cfg.as_json(), explicit=explicit, device=device, progress=show_progress
    )
    result = training.evaluate(model, prepared, request)
    return EvaluationResult(
        metrics={name: float(value) for name, value in result.metrics.items()},
        matrices=dict(result.matrices),
        task=task,
        source=description,
        data=source,
        labels=list(result.labels),
        num_images=_count(prepared.val),
        skipped=list(prepared.skipped),
    )
