"""``train()`` and ``evaluate()``: a catalog model, a task's training pieces, Lightning.

The engine builds the pieces and hands them to Lightning's ``Trainer``, which owns the
loop, devices, strategies (DDP, FSDP), precision, accumulation, clipping and progress.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import platform
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from visionatlas.catalog import Catalog, get_catalog
from visionatlas.errors import VisionAtlasError
from visionatlas.lifecycle.checkpoint import MANIFEST_NAME
from visionatlas.training.protocol import (
    CustomFitTraining,
    DataRequest,
    SkippedFile,
    TaskTraining,
    TrainingData,
)
from visionatlas_train.config import (
    RUNTIME_KEYS,
    ConfigError,
    TrainConfig,
    catalog_defaults,
    load_config_file,
    resolve_config,
)
from visionatlas_train.run import CONFIG_NAME, LABELS_NAME, SUMMARY_NAME, RunFolder, finite

if TYPE_CHECKING:
    import lightning.pytorch as pl
    from torch import nn
    from torch.utils.data import DataLoader

    from visionatlas.lifecycle.versioning.rows import ModelEntry
    from visionatlas.lifecycle.versioning.store import ModelRegistry

__all__ = ["EvaluationResult", "TrainError", "TrainResult", "evaluate", "train"]

log = logging.getLogger("visionatlas.train")
RUN_FORMAT = "visionatlas.train.run"


class TrainError(VisionAtlasError, ValueError):
    """A run that cannot start or continue: bad data, a run folder in the way, ..."""


@dataclass
class TrainResult:
    """What :func:`train` returns: the model with its best weights, and where the run is."""

    model: nn.Module
    metrics: dict[str, float]
    """The best epoch's metrics (``val/...`` and ``train/...``), or the last epoch's."""
    run_dir: Path
    config: TrainConfig
    labels: list[str]
    history: list[dict[str, Any]]
    best_epoch: int | None
    epochs_completed: int
    stopped_early: bool
    best_checkpoint: Path
    last_checkpoint: Path
    skipped: list[SkippedFile] = field(default_factory=list)
    registered: ModelEntry | None = None
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvaluationResult:
    """What :func:`evaluate` returns: scalar metrics, matrices, and what was evaluated."""

    metrics: dict[str, float]
    matrices: dict[str, list[Any]]
    task: str
    source: str
    data: str
    labels: list[str]
    num_images: int
    skipped: list[SkippedFile] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return finite(
            {
                "task": self.task,
                "source": self.source,
                "data": self.data,
                "num_images": self.num_images,
                "metrics": self.metrics,
                "matrices": self.matrices,
                "labels": self.labels,
                "skipped": [{"path": str(s.path), "reason": s.reason} for s in self.skipped],
            }
        )


# -- helpers -----------------------------------------------------------------------------------
def _is_rank_zero() -> bool:
    """Whether this process is global rank 0, before any Trainer exists (launcher env)."""
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        value = os.environ.get(name, "0").strip() or "0"
        if value != "0":
            return False
    return True


def _processes(config: TrainConfig) -> int:
    declared = int(os.environ.get("WORLD_SIZE", "1") or 1)
    devices = config.devices if isinstance(config.devices, int) else 1
    return max(declared, devices * config.num_nodes)


def _data_source(data: str | os.PathLike[str]) -> str:
    text = os.fspath(data)
    if text.startswith("builtin:"):
        return text
    path = Path(text).expanduser()
    return str(path.resolve()) if path.exists() else text


def _check_device(config: TrainConfig) -> None:
    """Refuse what the device cannot do (a precision, FSDP, SyncBatchNorm) before any data
    is read, naming what works instead."""
    needs_gpu = {
        "precision 16-mixed": config.precision == "16-mixed",
        "strategy fsdp": config.strategy == "fsdp",
        "sync_batchnorm": config.sync_batchnorm,
    }
    wanted = [name for name, needed in needs_gpu.items() if needed]
    if not wanted:
        return
    import torch

    gpu = config.accelerator in ("gpu", "cuda") or (
        config.accelerator == "auto" and torch.cuda.is_available()
    )
    if gpu:
        return
    instead = {
        "precision 16-mixed": "precision 32 or bf16-mixed",
        "strategy fsdp": "strategy auto or ddp",
        "sync_batchnorm": "sync_batchnorm false",
    }
    raise ConfigError(
        f"{wanted[0]} needs a CUDA GPU, and none is used here; on this device use "
        f"{instead[wanted[0]]}"
    )


def _precision(config: TrainConfig) -> str:
    return "32-true" if config.precision == "32" else config.precision


def _check_out(run_dir: Path, *, resumable: bool = True) -> None:
    """Refuse a run folder that holds a run or other files (nothing is created yet)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise TrainError(f"--out {run_dir} is a file; give a directory for the run")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if (run_dir / CONFIG_NAME).is_file():
            instead = f"continue it with --resume {run_dir}, or " if resumable else ""
            raise TrainError(f"{run_dir} already holds a run; {instead}give another --out")
        raise TrainError(f"--out {run_dir} is not empty; give a new or empty directory")


def _default_run_dir(task: str, architecture: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{task}-{architecture.replace('/', '-')}-{stamp}"  # timm/...


def _parse_register(register: str | None) -> tuple[str, str] | None:
    if register is None:
        return None
    from visionatlas.lifecycle.versioning.rows import check_name
    from visionatlas.lifecycle.versioning.semver import normalize_version

    name, sep, version = register.rpartition("@")
    if not sep or not name or not version:
        raise ConfigError(f"--register takes NAME@VERSION, such as digits@1.0.0; got {register!r}")
    try:
        return check_name(name), normalize_version(version)
    except ValueError as err:
        raise ConfigError(f"--register {register}: {err}") from err


def _registry(registry: ModelRegistry | str | os.PathLike[str] | None) -> ModelRegistry:
    from visionatlas.lifecycle.versioning.store import ModelRegistry

    if isinstance(registry, ModelRegistry):
        return registry
    return ModelRegistry(registry)


def _check_data(data: TrainingData, source: str, *, purpose: str) -> None:
    datasets = [("validation", data.val)]
    if purpose == "fit":
        datasets.insert(0, ("training", data.train))
    for what, dataset in datasets:
        if dataset is None or len(dataset) == 0:  # type: ignore[arg-type]
            raise TrainError(f"{source} gave no {what} images; check the data's layout")


@contextlib.contextmanager
def _quiet_lightning(verbose: bool) -> Iterator[None]:
    """Lightning's informational logs and well-known warnings off: one line per epoch."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        for message in (
            r".*does not have many workers.*",
            r"Checkpoint directory .* exists and is not empty.*",
            r".*`training_step` returned `None`.*",
            r".*The number of training batches .* is smaller than the logging interval.*",
            r".*Experiment logs directory .* exists and is not empty.*",
            r".*GPU available but not used.*",
            r".*You defined a `validation_step` but have no `val_dataloader`.*",
            r".*Total length of .* across ranks is zero.*",
            r".*isinstance\(treespec, LeafSpec\).*",
        ):
            warnings.filterwarnings("ignore", message=message)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def _loader(
    dataset: Any,
    training: TaskTraining,
    config: TrainConfig,
    *,
    shuffle: bool,
    world_size: int = 1,
) -> DataLoader[Any]:
    """A data loader of ``dataset``; training batches are shuffled per epoch from the seed.

    With one process the shuffling is a ``DistributedSampler`` of one replica (Lightning
    sets its epoch), so the order depends on the seed and the epoch only: a resumed run
    sees the batches a never-stopped run would, and a run on N processes (where Lightning
    installs a ``DistributedSampler`` of N replicas with the same seed) sees the same
    samples in each global batch.
    """
    import torch
    from torch.utils.data import DataLoader, DistributedSampler

    sampler: DistributedSampler[Any] | None = None
    if shuffle and world_size == 1:
        sampler = DistributedSampler(
            dataset, num_replicas=1, rank=0, shuffle=True, seed=config.seed, drop_last=False
        )
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=config.num_workers,
        collate_fn=training.collate,
        pin_memory=torch.cuda.is_available() and config.accelerator != "cpu",
        persistent_workers=config.num_workers > 0,
        drop_last=shuffle and len(dataset) > config.batch_size * world_size,
    )


def _model_config(config: TrainConfig) -> dict[str, Any]:
    model = dict(config.model)
    if config.dropout is not None:
        model["dropout"] = config.dropout
    if config.freeze_backbone:
        model["freeze_backbone"] = True
    return model


def _versions() -> dict[str, str]:
    import lightning
    import torch
    import torchmetrics

    from visionatlas import __version__

    return {
        "visionatlas": __version__,
        "torch": str(torch.__version__),
        "lightning": str(lightning.__version__),
        "torchmetrics": str(torchmetrics.__version__),
        "python": platform.python_version(),
    }


# -- training ----------------------------------------------------------------------------------
def _resume_layers(
    stored: Mapping[str, Any], layers: Sequence[Mapping[str, Any] | TrainConfig | None]
) -> list[Mapping[str, Any]]:
    """Only runtime keys may change on resume (where it runs, not what it computes)."""
    kept: list[Mapping[str, Any]] = []
    for layer in layers:
        if layer is None:
            continue
        values = (
            {k: v for k, v in layer.as_json().items() if k in layer.model_fields_set}
            if isinstance(layer, TrainConfig)
            else dict(layer)
        )
        changed = sorted(
            k for k, v in values.items() if k not in RUNTIME_KEYS and stored.get(k) != v
        )
        if changed:
            raise ConfigError(
                f"a resumed run keeps its settings; cannot change {', '.join(changed)} "
                f"(only {', '.join(sorted(RUNTIME_KEYS))} may change)"
            )
        kept.append(values)
    return kept


def _read_run(run_dir: Path) -> dict[str, Any]:
    folder = RunFolder(run_dir)
    if not (run_dir / CONFIG_NAME).is_file():
        raise TrainError(f"{run_dir} is not a training run: it has no {CONFIG_NAME}")
    try:
        stored = folder.read_json(CONFIG_NAME)
    except ValueError as err:
        raise TrainError(f"cannot read {run_dir / CONFIG_NAME}: {err}") from err
    if not isinstance(stored, dict) or stored.get("format") != RUN_FORMAT:
        raise TrainError(f"{run_dir / CONFIG_NAME} is not a visionatlas training run config")
    return stored


def train(
    task: str | None = None,
    architecture: str | None = None,
    data: str | os.PathLike[str] | None = None,
    config: TrainConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    model_config: Any = None,
    out: str | os.PathLike[str] | None = None,
    register: str | None = None,
    resume: str | os.PathLike[str] | None = None,
    sets: Sequence[str] = (),
    registry: ModelRegistry | str | os.PathLike[str] | None = None,
    catalog: Catalog | None = None,
    callbacks: Sequence[Any] = (),
    progress_bar: bool | None = None,
    verbose: bool = True,
    stream: TextIO | None = None,
) -> TrainResult:
    """Train ``architecture`` for ``task`` on ``data`` and return the fitted model.

    ``config`` is a :class:`TrainConfig`, a mapping, or a JSON/YAML file; unset values
    take the architecture's catalog defaults, and ``sets`` (``"key=value"``) go last.
    ``model_config`` is the architecture's config (pretrained weights, backbone options).
    The run is written to ``out`` (default ``runs/TASK-ARCH-TIMESTAMP``);
    ``resume=RUN_DIR`` continues a stopped run from its last checkpoint, optimizer and
    schedule included. ``register="NAME@VERSION"`` stores the best model in the model
    registry (``registry``, default: the user's). ``callbacks`` are further Lightning
    callbacks (a ``LearningRateMonitor``, your own). One line per epoch goes to ``stream``
    (default stderr) unless ``verbose=False``; ``progress_bar`` defaults to whether
    stderr is a terminal.
    """
    catalog = catalog or get_catalog()
    rank_zero = _is_rank_zero()
    stored: dict[str, Any] | None = None
    if resume is not None:
        run_dir = Path(resume)
        stored = _read_run(run_dir)
        if stored.get("fit") == "custom":
            raise ConfigError(
                f"the run in {run_dir} was fitted by {stored['task']}'s own fit, which is all "
                "or nothing and cannot be resumed; start a new run"
            )
        for name, given, kept in (
            ("task", task, stored["task"]),
            ("architecture", architecture, stored["architecture"]),
        ):
            if given is not None and given != kept:
                raise ConfigError(f"the run in {run_dir} trains {name} {kept!r}, not {given!r}")
        if data is not None and _data_source(data) != stored["data"]:
            raise ConfigError(f"the run in {run_dir} trains on {stored['data']}, not on {data}")
        if out is not None and Path(out).resolve() != run_dir.resolve():
            raise ConfigError("a resumed run stays in its folder; drop --out or make it RUN_DIR")
        task, architecture, data = stored["task"], stored["architecture"], stored["data"]
    if task is None or architecture is None or data is None:
        raise ConfigError("train needs a task, an architecture and data (or resume=RUN_DIR)")
    spec = catalog.get_architecture(task, architecture)
    training = catalog.load_training(task)
    layers: list[Mapping[str, Any] | TrainConfig | None] = []
    if model_config is not None:
        model_dict = (
            model_config.model_dump(mode="json", exclude_unset=True)
            if hasattr(model_config, "model_dump")
            else dict(model_config)
        )
        # the two model settings that are also training settings go to the top level
        top = {k: model_dict.pop(k) for k in ("dropout", "freeze_backbone") if k in model_dict}
        layers.append({"model": model_dict, **top})
    if isinstance(config, (str, os.PathLike)):
        layers.append(load_config_file(os.fspath(config)))
    else:
        layers.append(config)
    if isinstance(training, CustomFitTraining):  # its own fit, not Lightning's loop
        from visionatlas_train.custom_fit import train_custom

        return train_custom(
            training, task=task, architecture=architecture, data=data, layers=layers,
            sets=sets, catalog=catalog, out=out, register=register, registry=registry,
            callbacks=callbacks, progress_bar=progress_bar, verbose=verbose, stream=stream,
        )  # fmt: skip
    if stored is not None:
        from visionatlas_train.config import apply_set

        runtime = _resume_layers(stored["config"], [*layers, apply_set({}, sets)])
        cfg = resolve_config(stored["config"], *runtime)
    else:
        cfg = resolve_config(catalog_defaults(spec.hyperparameters), *layers, sets=sets)
    _check_device(cfg)
    target = _parse_register(register)
    if resume is None:
        if out is None:
            if _processes(cfg) > 1:
                raise ConfigError("training with several processes needs --out (out=...)")
            out = _default_run_dir(task, architecture)
        run_dir = Path(out)
        if rank_zero:
            _check_out(run_dir)
    run_dir = run_dir.resolve()
    folder = RunFolder(run_dir)
    source = _data_source(data)
    if target is not None and rank_zero:
        with contextlib.suppress(LookupError):
            entry = _registry(registry).get(*target)
            raise TrainError(
                f"the registry already holds {entry.ref}; choose another --register version"
            )
    request = DataRequest(
        purpose="fit",
        input_size=cfg.input_size,
        val_fraction=cfg.val_fraction,
        seed=cfg.seed,
        strict=cfg.strict,
        cache_dir=Path(cfg.cache_dir) if cfg.cache_dir else None,
        augment=cfg.augment,
    )
    prepared = training.prepare_data(source, request)
    _check_data(prepared, source, purpose="fit")
    model_cfg = _model_config(cfg)
    outputs = model_cfg.get("num_outputs")
    if outputs is not None and outputs != prepared.num_outputs:
        raise TrainError(
            f"the model config sets num_outputs={outputs} but {source} has "
            f"{prepared.num_outputs} {'classes' if prepared.labels else 'targets'}"
        )

    import lightning.pytorch as pl

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    model = catalog.create_model(
        task,
        architecture,
        model_cfg,
        num_classes=prepared.num_outputs,
        check_inputs=cfg.check_inputs,
    )
    labels = list(prepared.labels)
    run_info = {
        "format": RUN_FORMAT,
        "task": task,
        "architecture": architecture,
        "data": source,
        "num_outputs": prepared.num_outputs,
        "config": cfg.as_json(),
        "created_at": stored["created_at"] if stored else _now(),
        "versions": _versions(),
    }
    from visionatlas.inputs import checking_inputs

    with _quiet_lightning(verbose):
        # the module and trainer first: a setting the task or Lightning refuses (mixup for
        # regression, a strategy) fails before the run folder is written
        trainer, module, recorder = _build_trainer(
            model, training, cfg, prepared, folder, run_info,
            verbose=verbose, stream=stream, progress_bar=progress_bar, rank_zero=rank_zero,
            callbacks=callbacks,
        )  # fmt: skip
        ckpt_path = None
        if stored is not None and (folder.last / MANIFEST_NAME).is_file():
            ckpt_path = str(folder.last)
        if rank_zero:
            if stored is None:
                _check_out(run_dir)  # again: another run may have started there meanwhile
            folder.write_json(CONFIG_NAME, run_info)
            folder.write_json(LABELS_NAME, {"task": task, "labels": labels})
            if verbose:
                _print_start(run_info, prepared, stream, resumed=ckpt_path is not None)
        world = trainer.world_size
        train_loader = _loader(prepared.train, training, cfg, shuffle=True, world_size=world)
        val_loader = _loader(prepared.val, training, cfg, shuffle=False, world_size=world)
        started = time.perf_counter()
        try:
            with checking_inputs(cfg.check_inputs):
                trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_path)
        except SystemExit as stop:  # Lightning ends an interrupted fit with sys.exit(1)
            if trainer.interrupted:
                if trainer.is_global_zero:
                    print(
                        f"interrupted in epoch {trainer.current_epoch + 1}; continue the run "
                        f"with: visionatlas train --resume {run_dir}",
                        file=stream or sys.stderr,
                        flush=True,
                    )
                raise KeyboardInterrupt from stop
            raise
        finally:
            if trainer.is_global_zero and recorder.history:
                folder.write_plots(recorder.history)
    duration = time.perf_counter() - started
    return _finish(
        trainer, module, recorder, folder, cfg, run_info, prepared, labels,
        duration=duration, target=target, registry=registry, verbose=verbose, stream=stream,
    )  # fmt: skip


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _print_start(
    run_info: Mapping[str, Any], data: TrainingData, stream: TextIO | None, *, resumed: bool
) -> None:
    import json

    out = stream or sys.stderr
    cfg = run_info["config"]
    train_n = len(data.train) if data.train is not None else 0  # type: ignore[arg-type]
    val_n = len(data.val) if data.val is not None else 0  # type: ignore[arg-type]
    verb = "resuming" if resumed else "training"
    print(
        f"{verb} {run_info['task']}/{run_info['architecture']} on {run_info['data']}: "
        f"{train_n} train and {val_n} val images, {run_info['num_outputs']} outputs"
        + (f", {len(data.skipped)} unreadable files skipped" if data.skipped else ""),
        file=out,
    )
    print("config: " + json.dumps(cfg, separators=(", ", ": ")), file=out, flush=True)


def _build_trainer(
    model: nn.Module,
    training: TaskTraining,
    cfg: TrainConfig,
    data: TrainingData,
    folder: RunFolder,
    run_info: Mapping[str, Any],
    *,
    verbose: bool,
    stream: TextIO | None,
    progress_bar: bool | None,
    rank_zero: bool,
    callbacks: Sequence[Any] = (),
) -> tuple[pl.Trainer, Any, Any]:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EarlyStopping

    from visionatlas_train.checkpoint_io import VisionAtlasCheckpointIO
    from visionatlas_train.finetuning import TwoPhaseFinetuning
    from visionatlas_train.module import TrainingModule
    from visionatlas_train.precise_bn import PreciseBatchNorm
    from visionatlas_train.run import RunCheckpoint, RunRecorder

    monitor, mode = training.monitor, training.monitor_mode
    extra = {
        "task": run_info["task"],
        "labels": list(data.labels),
        "data": run_info["data"],
        "train_config": run_info["config"],
    }
    module = TrainingModule(model, training, cfg, data, extra=extra)
    recorder = RunRecorder(
        folder if rank_zero else None,
        epochs=cfg.epochs,
        monitor=monitor,
        mode=mode,
        stream=stream,
        verbose=verbose,
    )

    best = RunCheckpoint(
        dirpath=str(folder.checkpoints),
        filename="best",
        monitor=monitor,
        mode=mode,
        save_top_k=1,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
        auto_insert_metric_name=False,
    )
    last = RunCheckpoint(  # every epoch, after best (so it holds best's state for resuming)
        dirpath=str(folder.checkpoints),
        filename="last",
        save_top_k=1,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
        auto_insert_metric_name=False,
    )
    run_callbacks: list[pl.Callback] = [recorder, best, last, *callbacks]
    if cfg.precise_bn_batches:
        run_callbacks.insert(0, PreciseBatchNorm(cfg.precise_bn_batches))
    if cfg.probe_epochs:
        run_callbacks.append(TwoPhaseFinetuning(cfg.probe_epochs))
    if cfg.early_stopping is not None:
        es = cfg.early_stopping
        es_monitor = es.monitor or monitor
        es_mode = es.mode or (mode if es_monitor == monitor else "min")
        run_callbacks.append(
            EarlyStopping(
                monitor=es_monitor,
                mode=es_mode,
                patience=es.patience,
                min_delta=es.min_delta,
                check_on_train_epoch_end=True,
                strict=True,
            )
        )
    show_progress = sys.stderr.isatty() if progress_bar is None else progress_bar
    io = VisionAtlasCheckpointIO(model)
    strategy: Any = cfg.strategy
    plugins: list[Any] = [io]
    if cfg.strategy == "fsdp":
        from visionatlas_train.strategies import safe_fsdp_strategy

        strategy = safe_fsdp_strategy(io)
        plugins = []
    trainer = pl.Trainer(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=strategy,
        precision=_precision(cfg),  # type: ignore[arg-type]
        max_epochs=cfg.epochs,
        gradient_clip_val=cfg.gradient_clip,
        gradient_clip_algorithm=cfg.gradient_clip_algorithm,
        accumulate_grad_batches=cfg.accumulate_grad_batches,
        sync_batchnorm=cfg.sync_batchnorm,
        limit_train_batches=cfg.limit_train_batches,
        limit_val_batches=cfg.limit_val_batches,
        callbacks=run_callbacks,
        plugins=plugins,
        logger=False,
        enable_progress_bar=show_progress and verbose,
        enable_model_summary=False,
        default_root_dir=str(folder.path),
        num_sanity_val_steps=0,
    )
    return trainer, module, recorder


def _finish(
    trainer: pl.Trainer,
    module: Any,
    recorder: Any,
    folder: RunFolder,
    cfg: TrainConfig,
    run_info: Mapping[str, Any],
    data: TrainingData,
    labels: list[str],
    *,
    duration: float,
    target: tuple[str, str] | None,
    registry: Any,
    verbose: bool,
    stream: TextIO | None,
) -> TrainResult:
    from visionatlas.lifecycle.checkpoint import load_checkpoint

    model = module.model
    best_dir, last_dir = folder.best, folder.last
    if (best_dir / "checkpoint.json").is_file():
        load_checkpoint(best_dir, model)
    model.eval()
    history = list(recorder.history)
    best = recorder.best
    best_row = next((r for r in history if best and r["epoch"] == best["epoch"]), None)
    metrics_row = best_row or (history[-1] if history else {})
    metrics = {k: v for k, v in metrics_row.items() if "/" in k}
    stopped_early = bool(trainer.should_stop) and len(history) < cfg.epochs
    summary = {
        "task": run_info["task"],
        "architecture": run_info["architecture"],
        "data": run_info["data"],
        "epochs": cfg.epochs,
        "epochs_completed": len(history),
        "stopped_early": stopped_early,
        "best": None if best is None else {**best, "metrics": metrics},
        "final": history[-1] if history else None,
        "train_images": len(data.train) if data.train is not None else 0,  # type: ignore[arg-type]
        "val_images": len(data.val) if data.val is not None else 0,  # type: ignore[arg-type]
        "skipped": [{"path": str(s.path), "reason": s.reason} for s in data.skipped],
        "duration_s": round(duration, 3),
        "checkpoints": {"best": str(best_dir), "last": str(last_dir)},
        "registered": None,
    }
    entry = None
    if trainer.is_global_zero:
        for name, matrix in recorder.best_matrices.items():
            folder.write_matrix(name, matrix, labels)
        if target is not None:
            entry = _register(model, target, registry, run_info, metrics, labels, summary)
            summary["registered"] = entry.ref
        folder.write_json(SUMMARY_NAME, summary)
        if verbose:
            print_summary(summary, folder.path, stream)
    return TrainResult(
        model=model,
        metrics=metrics,
        run_dir=folder.path,
        config=cfg,
        labels=labels,
        history=history,
        best_epoch=None if best is None else int(best["epoch"]),
        epochs_completed=len(history),
        stopped_early=stopped_early,
        best_checkpoint=best_dir,
        last_checkpoint=last_dir,
        skipped=list(data.skipped),
        registered=entry,
        summary=summary,
    )


def _register(
    model: nn.Module,
    target: tuple[str, str],
    registry: Any,
    run_info: Mapping[str, Any],
    metrics: Mapping[str, float],
    labels: list[str],
    summary: Mapping[str, Any],
) -> ModelEntry:
    name, version = target
    cfg = run_info["config"]
    best = summary.get("best") or {}
    description = (
        f"{run_info['task']}/{run_info['architecture']} trained on {run_info['data']} for "
        f"{summary['epochs_completed']} epoch{'' if summary['epochs_completed'] == 1 else 's'}"
        + (f" (best epoch {best['epoch']}, {best['monitor']} {best['value']:.4f})" if best else "")
    )
    stored = {
        **metrics,
        "training": {
            "labels": labels,
            "input_size": cfg["input_size"],
            "run": str(summary["checkpoints"]["best"]),
        },
    }
    return _registry(registry).register(
        name,
        version,
        model,
        tags=("trained", run_info["task"]),
        metrics=stored,
        description=description,
    )


def print_summary(summary: Mapping[str, Any], run_dir: Path, stream: TextIO | None) -> None:
    """The one-line outcome of a run (``done: 3 epochs in ...``)."""
    out = stream or sys.stderr
    if summary.get("fit") == "custom":  # a task's own fit: no epochs
        text = f"done: fitted in {summary['duration_s']:.1f}s; run in {run_dir}"
        if summary.get("registered"):
            text += f"; registered {summary['registered']}"
        print(text, file=out, flush=True)
        return
    best = summary.get("best")
    count = summary["epochs_completed"]
    text = f"done: {count} epoch{'' if count == 1 else 's'} in {summary['duration_s']:.1f}s"
    if summary.get("stopped_early"):
        text += " (stopped early)"
    if best:
        text += f"; best epoch {best['epoch']}: {best['monitor']} {best['value']:.4f}"
    if summary.get("skipped"):
        text += f"; {len(summary['skipped'])} unreadable files skipped"
    text += f"; run in {run_dir}"
    if summary.get("registered"):
        text += f"; registered {summary['registered']}"
    print(text, file=out, flush=True)


# -- evaluation --------------------------------------------------------------------------------
def load_source(
    source: Any, registry: Any, catalog: Catalog
) -> tuple[nn.Module, str, list[str], dict[str, Any], str]:
    """``(model, task, labels, stored train config, description)`` of what to evaluate."""
    from torch import nn

    from visionatlas.lifecycle.checkpoint import load_checkpoint
    from visionatlas.lifecycle.rebuild import build_info_of

    if isinstance(source, nn.Module):
        info = build_info_of(source)
        if info is None:
            raise TrainError("evaluate needs a model built by visionatlas (with build info)")
        return source, info.task, [], {}, f"{info.task}/{info.architecture} (in memory)"
    path = Path(os.fspath(source))
    if path.is_dir() and (path / CONFIG_NAME).is_file():
        stored = _read_run(path)
        best = RunFolder(path).best
        if not (best / MANIFEST_NAME).is_file():
            raise TrainError(f"the run in {path} has no best checkpoint yet")
        checkpoint = load_checkpoint(best)
        labels = list(checkpoint.extra.get("labels") or [])
        assert checkpoint.model is not None
        return checkpoint.model, stored["task"], labels, stored["config"], f"run {path}"
    if path.is_dir() and (path / MANIFEST_NAME).is_file():
        checkpoint = load_checkpoint(path)
        assert checkpoint.model is not None
        assert checkpoint.build_info is not None
        labels = list(checkpoint.extra.get("labels") or [])
        stored = dict(checkpoint.extra.get("train_config") or {})
        return checkpoint.model, checkpoint.build_info.task, labels, stored, f"checkpoint {path}"
    if path.exists():
        raise TrainError(
            f"{path} is neither a training run (RUN_DIR with {CONFIG_NAME}) nor a checkpoint"
        )
    text = os.fspath(source)
    if "/" in text or os.sep in text or text.startswith("."):
        raise TrainError(f"no training run or checkpoint at {text}: no such directory")
    name, _, version = text.partition("@")
    store = _registry(registry)
    entry = store.get(name, version or "latest")
    model = store.load(entry.name, entry.version)
    training_info = entry.metrics.get("training") if isinstance(entry.metrics, dict) else None
    labels = list((training_info or {}).get("labels") or [])
    config: dict[str, Any] = dict((training_info or {}).get("config") or {})
    if training_info and training_info.get("input_size"):
        config["input_size"] = training_info["input_size"]
    return model, entry.task, labels, config, f"registered model {entry.ref}"


def custom_fit_run(
    source: Any, catalog: Catalog
) -> tuple[CustomFitTraining, Path, dict[str, Any]] | None:
    """``(training, run folder, its config.json)`` if ``source`` is the run folder of a
    task's own fit, else ``None``."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    path = Path(os.fspath(source))
    if not (path.is_dir() and (path / CONFIG_NAME).is_file()):
        return None
    stored = _read_run(path)
    if stored.get("fit") != "custom":
        return None
    training = catalog.load_training(stored["task"])
    if not isinstance(training, CustomFitTraining):
        raise TrainError(
            f"the run in {path} was fitted by {stored['task']}'s own fit, but that task's "
            "training (from its plugin) no longer has one"
        )
    return training, path, stored


def evaluate(
    source: Any,
    data: str | os.PathLike[str],
    *,
    config: Mapping[str, Any] | None = None,
    sets: Sequence[str] = (),
    registry: ModelRegistry | str | os.PathLike[str] | None = None,
    catalog: Catalog | None = None,
    progress_bar: bool | None = None,
) -> EvaluationResult:
    """The task's metrics of a trained model on held-out data.

    ``source`` is a run folder (its best checkpoint), a checkpoint directory, a registered
    ``NAME[@VERSION]``, or a model built by visionatlas. ``data`` is read for evaluation:
    its ``test/`` split, else ``val/``, else all of it. Settings (batch size, input size,
    workers, device) come from the run's config, then the architecture's defaults, then
    ``config`` and ``sets``.
    """
    catalog = catalog or get_catalog()
    custom = custom_fit_run(source, catalog)
    if custom is not None:
        from visionatlas_train.custom_fit import MODEL_DIR, evaluate_custom

        training_, run_dir, stored_run = custom
        model_dir = run_dir / MODEL_DIR
        if not model_dir.exists():
            raise TrainError(f"the run in {run_dir} has no fitted model ({model_dir} is missing)")
        return evaluate_custom(
            training_, str(stored_run["task"]), stored_run["config"],
            lambda device: training_.load_model(model_dir, device=device), data,
            description=f"run {run_dir}", config=config, sets=sets, progress_bar=progress_bar,
        )  # fmt: skip
    model, task, labels, stored, description = load_source(source, registry, catalog)
    from visionatlas.lifecycle.rebuild import build_info_of

    info = build_info_of(model)
    assert info is not None
    training = catalog.load_training(task)
    if isinstance(training, CustomFitTraining):
        if not stored:  # in memory: the settings of its fit (the image size) are unknown
            raise TrainError(
                f"{description} is a {task} model, which trains with its own fit: evaluate its "
                "run folder or registered name (visionatlas evaluate RUN_DIR|NAME@VERSION DATA)"
            )
        from visionatlas_train.custom_fit import evaluate_custom

        return evaluate_custom(
            training, task, stored, lambda device: model.to(device), data,
            description=description, config=config, sets=sets, progress_bar=progress_bar,
        )  # fmt: skip
    base = dict(stored)
    if not base:
        base = catalog_defaults(catalog.get_architecture(task, info.architecture).hyperparameters)
    runtime = {"devices": 1, "strategy": "auto", "num_nodes": 1}
    cfg = resolve_config(base, runtime, config, sets=sets)
    _check_device(cfg)
    src = _data_source(data)
    request = DataRequest(
        purpose="evaluate",
        input_size=cfg.input_size,
        val_fraction=cfg.val_fraction,
        seed=cfg.seed,
        strict=cfg.strict,
        cache_dir=Path(cfg.cache_dir) if cfg.cache_dir else None,
        augment="none",
        labels=tuple(labels),
    )
    prepared = training.prepare_data(src, request)
    _check_data(prepared, src, purpose="evaluate")
    if prepared.num_outputs != info.num_classes:
        raise TrainError(
            f"{description} has {info.num_classes} outputs but {src} has "
            f"{prepared.num_outputs} {'classes' if prepared.labels else 'targets'}"
        )
    if labels and prepared.labels and list(prepared.labels) != labels:
        missing = sorted(set(labels) - set(prepared.labels))
        added = sorted(set(prepared.labels) - set(labels))
        raise TrainError(
            f"{src} does not have the classes {description} was trained on"
            + (f"; missing: {', '.join(missing)}" if missing else "")
            + (f"; not trained on: {', '.join(added)}" if added else "")
        )
    import lightning.pytorch as pl

    from visionatlas.inputs import checking_inputs
    from visionatlas_train.module import TrainingModule

    module = TrainingModule(model, training, cfg, prepared)
    show_progress = sys.stderr.isatty() if progress_bar is None else progress_bar
    loader = _loader(prepared.val, training, cfg, shuffle=False)
    with _quiet_lightning(False):
        trainer = pl.Trainer(
            accelerator=cfg.accelerator,
            devices=1,
            precision=_precision(cfg),  # type: ignore[arg-type]
            logger=False,
            enable_progress_bar=show_progress,
            enable_model_summary=False,
            enable_checkpointing=False,
            limit_test_batches=cfg.limit_val_batches,
        )
        with checking_inputs(cfg.check_inputs):
            trainer.test(module, loader, verbose=False)
    metrics = {
        name.removeprefix("test/"): float(value)
        for name, value in trainer.callback_metrics.items()
        if name.startswith("test/")
    }
    matrices = {
        name.removeprefix("test/"): value.tolist() for name, value in module.matrices.items()
    }
    return EvaluationResult(
        metrics=metrics,
        matrices=matrices,
        task=task,
        source=description,
        data=src,
        labels=list(prepared.labels) or labels,
        num_images=len(prepared.val),  # type: ignore[arg-type]
        skipped=list(prepared.skipped),
    )
