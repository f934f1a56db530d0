"""The validated training config, and how it is layered from defaults, a file and ``--set``.

:class:`TrainConfig` is a pydantic model like the core's configs: unknown keys are
rejected, numbers and booleans are strict (``"0.3"`` is not a float, ``"true"`` is not a
bool; an int is fine for a float), and floats must be finite. Layering goes one way
(CONVENTIONS 20): the architecture's catalog defaults (learning rate, batch size, input
size, epochs, optimizer, weight decay), then a JSON or YAML file, then ``key=value`` pairs
with dotted keys (``optimizer.name=sgd``), validated once at the end by
:func:`resolve_config`.

This module imports neither torch nor lightning; checking an optimizer's or scheduler's
``params`` against the class's signature imports torch only when such params are given.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from visionatlas.errors import close_matches

__all__ = [
    "OPTIMIZERS",
    "SCHEDULERS",
    "ConfigError",
    "EarlyStoppingConfig",
    "OptimizerConfig",
    "SchedulerConfig",
    "TrainConfig",
    "apply_set",
    "catalog_defaults",
    "load_config_file",
    "merge",
    "parse_set",
    "resolve_config",
]

OPTIMIZERS: Mapping[str, tuple[str, Mapping[str, Any]]] = {
    "adamw": ("torch.optim.AdamW", {}),
    "adam": ("torch.optim.Adam", {}),
    "sgd": ("torch.optim.SGD", {"momentum": 0.9}),
    "rmsprop": ("torch.optim.RMSprop", {}),
    "adagrad": ("torch.optim.Adagrad", {}),
}
"""Optimizer names: the torch class and the defaults that differ from torch's."""

SCHEDULERS: Mapping[str, Mapping[str, Any]] = {
    "cosine": {"eta_min": 0.0},
    "step": {"step_size": None, "gamma": 0.1},
    "multistep": {"milestones": None, "gamma": 0.1},
    "exponential": {"gamma": 0.9},
    "onecycle": {
        "pct_start": 0.3,
        "div_factor": 25.0,
        "final_div_factor": 1e4,
        "anneal_strategy": "cos",
        "three_phase": False,
    },
    "plateau": {
        "factor": 0.1,
        "patience": 5,
        "threshold": 1e-4,
        "threshold_mode": "rel",
        "cooldown": 0,
        "min_lr": 0.0,
        "eps": 1e-8,
    },
    "cosine_restarts": {"T_0": None, "T_mult": 1, "eta_min": 0.0},
    "none": {},
}
"""Scheduler names and their parameters (torch's names; durations in epochs) with defaults.

``None`` defaults are derived from the run's length: ``step_size`` and ``T_0`` a third of
the epochs, ``milestones`` at half and three quarters of them.
"""

PRECISIONS = ("32", "bf16-mixed", "16-mixed")
RUNTIME_KEYS = frozenset({"accelerator", "devices", "num_nodes", "strategy", "num_workers"})
"""Keys a resumed run may change (they do not change what is computed, only where)."""

_OPTIMIZER_OWN = {"params", "lr", "weight_decay"}
_LR_HINT = {"lr": "learning_rate", "weight_decay": "weight_decay", "max_lr": "learning_rate"}


class ConfigError(ValueError):
    """A training config that cannot be read or validated; the message names the field."""


def _forbid() -> ConfigDict:
    return ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, populate_by_name=True)


def _import_class(path: str, what: str) -> type:
    """The class at dotted ``path`` (``"torch.optim.SGD"`` or ``"pkg.mod:Class"``)."""
    import importlib

    module_name, sep, attribute = path.partition(":")
    if not sep:
        module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute:
        raise ValueError(f"{what} class {path!r} is not a dotted path such as torch.optim.SGD")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"{what} class {path!r} cannot be imported: {err}") from None
    if not isinstance(obj, type):
        raise ValueError(f"{what} class {path!r} is a {type(obj).__name__}, not a class")
    return obj


def _check_params(cls: type, params: Mapping[str, Any], what: str, own: set[str]) -> None:
    """Every key of ``params`` is a keyword of ``cls``; the run's own keys are refused."""
    import inspect

    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return
    accepted = {
        name
        for name, p in signature.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    } - own
    for key in params:
        if key in own:
            hint = f"; set {_LR_HINT[key]} instead" if key in _LR_HINT else ""
            raise ValueError(f"{what} params must not set {key!r}: the run sets it{hint}")
        if key not in accepted and not any(
            p.kind == p.VAR_KEYWORD for p in signature.parameters.values()
        ):
            near = close_matches(key, accepted)
            raise ValueError(
                f"{what} {cls.__qualname__} has no parameter {key!r}"
                + (f"; did you mean {' or '.join(map(repr, near))}?" if near else ".")
                + f" Accepted: {', '.join(sorted(accepted))}"
            )


def _unknown(kind: str, name: str, known: Sequence[str]) -> ValueError:
    near = close_matches(name, known)
    hint = f"; did you mean {' or '.join(map(repr, near))}?" if near else "."
    return ValueError(
        f"unknown {kind} {name!r}{hint} Known: {', '.join(known)}; or give "
        f'{{"class": "dotted.path.Class", "params": {{...}}}}'
    )


class OptimizerConfig(BaseModel):
    """An optimizer by ``name`` (with ``params`` overriding its defaults) or by ``class``.

    The learning rate and weight decay are the run's (``learning_rate``,
    ``weight_decay``), never set here.
    """

    model_config = _forbid()

    name: str | None = Field(default=None, description=f"one of {', '.join(OPTIMIZERS)}")
    class_: str | None = Field(
        default=None,
        alias="class",
        description="a torch.optim.Optimizer subclass by dotted path, e.g. torch.optim.NAdam",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments of the optimizer (e.g. momentum)"
    )

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> OptimizerConfig:
        if (self.name is None) == (self.class_ is None):
            raise ValueError("give the optimizer's name or its class, not both and not neither")
        if self.name is not None and self.name not in OPTIMIZERS:
            raise _unknown("optimizer", self.name, list(OPTIMIZERS))
        if self.class_ is not None or self.params:
            _check_params(self.resolve_class(), self.params, "optimizer", _OPTIMIZER_OWN)
        return self

    def resolve_class(self) -> type:
        """The optimizer class (imports torch)."""
        import torch

        path = self.class_ if self.class_ is not None else OPTIMIZERS[str(self.name)][0]
        cls = _import_class(path, "optimizer")
        if not issubclass(cls, torch.optim.Optimizer):
            raise ValueError(f"optimizer class {path!r} is not a torch.optim.Optimizer subclass")
        return cls

    def keyword_arguments(self) -> dict[str, Any]:
        """The optimizer's keyword arguments besides ``lr`` and ``weight_decay``."""
        defaults = dict(OPTIMIZERS[self.name][1]) if self.name is not None else {}
        return {**defaults, **self.params}

    @property
    def label(self) -> str:
        return self.name if self.name is not None else str(self.class_)


class SchedulerConfig(BaseModel):
    """A learning-rate schedule by ``name`` or by ``class``.

    Named schedules step after every optimizer step, with durations given in epochs (see
    :data:`SCHEDULERS`); ``plateau`` steps once per epoch on the task's monitored metric.
    A ``class`` (a ``torch.optim.lr_scheduler`` class or any importable subclass of
    ``LRScheduler``) gets ``params`` as they are and steps every ``interval``.
    """

    model_config = _forbid()

    name: str | None = Field(default=None, description=f"one of {', '.join(SCHEDULERS)}")
    class_: str | None = Field(
        default=None, alias="class", description="an LR scheduler class by dotted path"
    )
    params: dict[str, Any] = Field(default_factory=dict, description="the schedule's parameters")
    interval: Literal["epoch", "step"] = Field(
        default="epoch", description="when a class-form scheduler steps (named ones: fixed)"
    )

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> SchedulerConfig:
        if (self.name is None) == (self.class_ is None):
            raise ValueError("give the scheduler's name or its class, not both and not neither")
        if self.name is not None:
            if self.name not in SCHEDULERS:
                raise _unknown("scheduler", self.name, list(SCHEDULERS))
            accepted = SCHEDULERS[self.name]
            for key in self.params:
                if key not in accepted:
                    near = close_matches(key, accepted)
                    raise ValueError(
                        f"scheduler {self.name!r} has no parameter {key!r}"
                        + (f"; did you mean {' or '.join(map(repr, near))}?" if near else ".")
                        + f" Accepted: {', '.join(accepted) or 'none'}"
                    )
            if "interval" in self.model_fields_set:
                raise ValueError(
                    f"interval applies to class-form schedulers; {self.name!r} steps "
                    "after every optimizer step (plateau: every epoch)"
                )
        else:
            _check_params(self.resolve_class(), self.params, "scheduler", {"optimizer", "max_lr"})
        return self

    def resolve_class(self) -> type:
        """The scheduler class of the class form (imports torch)."""
        import torch

        cls = _import_class(str(self.class_), "scheduler")
        bases = (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        if not issubclass(cls, bases):
            raise ValueError(
                f"scheduler class {self.class_!r} is not a torch.optim.lr_scheduler scheduler"
            )
        return cls

    @property
    def is_plateau(self) -> bool:
        if self.name is not None:
            return self.name == "plateau"
        import torch

        return issubclass(self.resolve_class(), torch.optim.lr_scheduler.ReduceLROnPlateau)

    @property
    def label(self) -> str:
        return self.name if self.name is not None else str(self.class_)


class EarlyStoppingConfig(BaseModel):
    """Stop when the monitored metric has not improved for ``patience`` epochs."""

    model_config = _forbid()

    patience: int = Field(default=5, ge=1, strict=True, description="epochs without improvement")
    monitor: str | None = Field(
        default=None, description="metric to watch, e.g. val/loss; default: the task's"
    )
    mode: Literal["min", "max"] | None = Field(
        default=None, description="min or max; default: the task's (or min for a loss)"
    )
    min_delta: float = Field(default=0.0, ge=0.0, strict=True, description="least improvement")

    @model_validator(mode="before")
    @classmethod
    def _from_patience(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return {"patience": value}
        return value


def _size(value: Any) -> Any:
    if isinstance(value, str):
        parts = value.lower().replace("x", ",").split(",")
        try:
            dims = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"input_size {value!r} is not N or HxW such as 224x160") from None
        return tuple(dims * 2 if len(dims) == 1 else dims)
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, list):
        return tuple(value)
    return value


class TrainConfig(BaseModel):
    """Everything that decides a training run (the data source and model aside).

    Unset fields take the architecture's catalog defaults (see :func:`resolve_config`);
    ``TrainConfig()`` alone uses generic ones.
    """

    model_config = _forbid()

    epochs: int = Field(default=30, ge=1, strict=True, description="training epochs")
    batch_size: int = Field(
        default=32, ge=1, strict=True, description="images per batch on each device"
    )
    learning_rate: float = Field(default=1e-3, gt=0.0, strict=True, description="peak LR")
    weight_decay: float = Field(default=1e-4, ge=0.0, strict=True, description="weight decay")
    optimizer: OptimizerConfig = Field(
        default_factory=lambda: OptimizerConfig(name="adamw"),
        description="a name (adamw, adam, sgd, rmsprop, adagrad) or {name|class, params}",
    )
    scheduler: SchedulerConfig = Field(
        default_factory=lambda: SchedulerConfig(name="cosine"),
        description="a name (cosine, step, multistep, exponential, onecycle, plateau, "
        "cosine_restarts, none) or {name|class, params, interval}",
    )
    warmup_epochs: float = Field(
        default=0.0, ge=0.0, strict=True, description="linear warm-up from 1% of the LR"
    )
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0, strict=True)
    mixup: float = Field(default=0.0, ge=0.0, strict=True, description="mixup alpha (0: off)")
    cutmix: float = Field(default=0.0, ge=0.0, strict=True, description="cutmix alpha (0: off)")
    dropout: float | None = Field(
        default=None,
        ge=0.0,
        lt=1.0,
        strict=True,
        description="head dropout (the model config's dropout); default: the architecture's",
    )
    freeze_backbone: bool = Field(
        default=False, strict=True, description="train only the head, for the whole run"
    )
    probe_epochs: int = Field(
        default=0,
        ge=0,
        strict=True,
        description="two-phase fine-tuning: epochs of linear probing (backbone frozen) "
        "before the whole model trains at learning_rate",
    )
    probe_learning_rate: float | None = Field(
        default=None,
        gt=0.0,
        strict=True,
        description="LR of the probing phase; default: 10 x learning_rate",
    )
    gradient_clip: float | None = Field(
        default=None, gt=0.0, strict=True, description="clip gradients at this value"
    )
    gradient_clip_algorithm: Literal["norm", "value"] = "norm"
    accumulate_grad_batches: int = Field(default=1, ge=1, strict=True)
    precision: Literal["32", "bf16-mixed", "16-mixed"] = "32"
    seed: int = Field(default=0, ge=0, strict=True)
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: int | Literal["auto"] = Field(default="auto", description="devices per node")
    num_nodes: int = Field(default=1, ge=1, strict=True)
    strategy: Literal["auto", "ddp", "fsdp"] = "auto"
    sync_batchnorm: bool = Field(
        default=False,
        strict=True,
        description="batch-norm statistics over all processes' batches (DDP, FSDP)",
    )
    precise_bn_batches: int = Field(
        default=8,
        ge=0,
        strict=True,
        description="training batches over which batch-norm statistics are recomputed "
        "before each validation (0: keep the running averages)",
    )
    early_stopping: EarlyStoppingConfig | None = Field(
        default=None, description="a patience (int) or {patience, monitor, mode, min_delta}"
    )
    num_workers: int = Field(default=2, ge=0, strict=True, description="data loader workers")
    val_fraction: float = Field(
        default=0.2, gt=0.0, lt=1.0, strict=True, description="held out when no val split"
    )
    strict: bool = Field(
        default=False, strict=True, description="refuse unreadable images instead of skipping"
    )
    augment: str = Field(default="default", description="the task's augmentation preset")
    input_size: tuple[int, int] = Field(default=(224, 224), description="N or [H, W]")
    check_inputs: bool = Field(
        default=True, strict=True, description="fail on NaN or infinite pixel values"
    )
    train_metrics: bool = Field(
        default=True, strict=True, description="also compute the task's metrics on train batches"
    )
    limit_train_batches: int | float | None = Field(
        default=None, description="batches (int) or fraction (float) of an epoch to train on"
    )
    limit_val_batches: int | float | None = Field(default=None)
    cache_dir: str | None = Field(default=None, description="where builtin: datasets go")
    model: dict[str, Any] = Field(
        default_factory=dict,
        description="the architecture's config (e.g. pretrained, backbone options)",
    )

    @field_validator("input_size", mode="before")
    @classmethod
    def _input_size(cls, value: Any) -> Any:
        return _size(value)

    @field_validator("input_size")
    @classmethod
    def _positive_size(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not all(isinstance(d, int) and 1 <= d <= 4096 for d in value):
            raise ValueError(f"input_size sides must be from 1 to 4096, got {list(value)}")
        return value

    @field_validator("devices", mode="before")
    @classmethod
    def _devices(cls, value: Any) -> Any:
        if isinstance(value, bool) or (isinstance(value, int) and value < 1):
            raise ValueError(f"devices must be 'auto' or a positive int, got {value!r}")
        if not isinstance(value, int) and value != "auto":
            raise ValueError(f"devices must be 'auto' or a positive int, got {value!r}")
        return value

    @field_validator("limit_train_batches", "limit_val_batches", mode="before")
    @classmethod
    def _limit(cls, value: Any) -> Any:
        if value is None:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a batch count or a fraction, got {value!r}")
        if isinstance(value, int) and value < 1:
            raise ValueError(f"a batch count must be at least 1, got {value}")
        if isinstance(value, float) and not (0.0 < value <= 1.0 and math.isfinite(value)):
            raise ValueError(f"a fraction of batches must be in (0, 1], got {value}")
        return value

    @field_validator("model")
    @classmethod
    def _model(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in ("dropout", "freeze_backbone"):
            if key in value:
                raise ValueError(f"set {key} at the top level of the training config")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.probe_epochs:
            if self.probe_epochs >= self.epochs:
                raise ValueError(
                    f"probe_epochs ({self.probe_epochs}) must be less than epochs "
                    f"({self.epochs}): the whole model trains in the epochs after the probe"
                )
            if self.freeze_backbone:
                raise ValueError(
                    "freeze_backbone keeps the backbone frozen for the whole run; with "
                    "probe_epochs it is frozen only for the probe: set one of them"
                )
        elif self.probe_learning_rate is not None:
            raise ValueError("probe_learning_rate is set but probe_epochs is 0")
        if self.scheduler.is_plateau and (self.warmup_epochs or self.probe_epochs):
            raise ValueError(
                "the plateau scheduler cannot follow a warm-up or a probing phase "
                "(it reacts to metrics, not to a schedule); set warmup_epochs and "
                "probe_epochs to 0 or choose another scheduler"
            )
        if self.scheduler.name == "onecycle" and self.warmup_epochs:
            raise ValueError(
                "onecycle warms up by itself (params.pct_start); set warmup_epochs to 0"
            )
        by_epoch = self.scheduler.class_ is not None and self.scheduler.interval == "epoch"
        if by_epoch and self.warmup_epochs != int(self.warmup_epochs):
            raise ValueError(
                "a scheduler stepping every epoch needs whole warmup_epochs, got "
                f"{self.warmup_epochs}"
            )
        return self

    @property
    def probe_lr(self) -> float:
        """The learning rate of the probing phase."""
        if self.probe_learning_rate is not None:
            return self.probe_learning_rate
        return 10.0 * self.learning_rate

    def as_json(self) -> dict[str, Any]:
        """The resolved config as JSON-ready data (``class`` keys as in the input)."""
        data: dict[str, Any] = self.model_dump(mode="json", by_alias=True)
        for key in ("optimizer", "scheduler"):
            data[key] = {k: v for k, v in data[key].items() if v is not None}
        if self.scheduler.name is not None:
            data["scheduler"].pop("interval", None)
        return data


# -- layering ----------------------------------------------------------------------------------
def catalog_defaults(hyperparameters: Any) -> dict[str, Any]:
    """The config values an architecture's catalog ``Hyperparameters`` give."""
    values: dict[str, Any] = dict(hyperparameters.as_dict())
    return {
        key: values[key]
        for key in (
            "learning_rate",
            "batch_size",
            "input_size",
            "epochs",
            "optimizer",
            "weight_decay",
        )
        if key in values
    }


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``update`` over ``base``; nested mappings merge, everything else replaces.

    For ``optimizer`` and ``scheduler`` a string is short for ``{"name": ...}``, and naming
    another optimizer (or class) drops the previous one's ``params``.
    """
    merged = dict(base)
    for key, value in update.items():
        previous = merged.get(key)
        if key in _CHOICES:
            previous, value = _choice(previous), _choice(value)
            if isinstance(previous, Mapping) and isinstance(value, Mapping):
                previous = _switch(previous, value)
        if isinstance(previous, Mapping) and isinstance(value, Mapping):
            merged[key] = merge(previous, value)
        else:
            merged[key] = value
    return merged


_CHOICES = ("optimizer", "scheduler")


def _choice(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


def _switch(previous: Mapping[str, Any], update: Mapping[str, Any]) -> Mapping[str, Any]:
    """``previous`` without its name, class and params when ``update`` picks another one."""
    picked = {k: update[k] for k in ("name", "class") if k in update}
    chosen = {k: previous[k] for k in ("name", "class") if k in previous}
    if not picked or not chosen or chosen == picked:
        return previous
    return {k: v for k, v in previous.items() if k not in ("name", "class", "params")}


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON (``.json``) or YAML (anything else) config file into a mapping."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {file} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {file}: {err}") from None
    if file.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as err:
            raise ConfigError(f"config file {file} is not valid JSON: {err}") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {file} is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {file} must hold a mapping of settings, not a {type(data).__name__}"
        )
    return data


def parse_value(text: str) -> Any:
    """A ``--set`` value: JSON if it parses (``5``, ``1e-3``, ``[1, 2]``, ``true``,
    ``null``), else the text itself (``sgd``, ``16-mixed``). ``yes`` stays a string: only
    ``true`` and ``false`` are booleans."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_set(pair: str) -> tuple[list[str], Any]:
    """``"optimizer.name=sgd"`` -> ``(["optimizer", "name"], "sgd")``."""
    key, sep, value = pair.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(
            f"--set expects KEY=VALUE with a dotted key, e.g. optimizer.name=sgd; got {pair!r}"
        )
    return parts, parse_value(value)


def apply_set(data: Mapping[str, Any], pairs: Sequence[str]) -> dict[str, Any]:
    """``data`` with every ``key=value`` pair applied in order (dotted keys go into nested
    mappings, which are created where missing)."""
    result = dict(data)
    for pair in pairs:
        keys, value = parse_set(pair)
        update: Any = value
        for key in reversed(keys[1:]):
            update = {key: update}
        head = keys[0]
        current = result.get(head)
        if len(keys) > 1:
            if head in _CHOICES:
                current = _choice(current)
            elif head == "early_stopping" and isinstance(current, int):
                current = {"patience": current}
            if current is not None and not isinstance(current, Mapping):
                raise ConfigError(
                    f"--set {pair}: {head} is {current!r}, which has no field {keys[1]!r}"
                )
            result[head] = dict(current or {})
        result = merge(result, {head: update})
    return result


def _field_path(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc if not str(part).startswith("function-"))


def format_validation_error(err: ValidationError) -> str:
    """One line per problem, naming the field and what is accepted."""
    lines = []
    for problem in err.errors(include_url=False):
        where = _field_path(problem["loc"])
        message = str(problem["msg"]).removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            fields = TrainConfig.model_fields
            name = str(problem["loc"][-1])
            near = close_matches(name, fields) if len(problem["loc"]) == 1 else []
            message = "unknown setting" + (
                f"; did you mean {' or '.join(map(repr, near))}?" if near else ""
            )
        lines.append(f"{where}: {message}" if where else message)
    return "; ".join(lines)


def resolve_config(
    defaults: Mapping[str, Any] | None = None,
    *layers: Mapping[str, Any] | TrainConfig | None,
    sets: Sequence[str] = (),
) -> TrainConfig:
    """Layer ``defaults``, then each of ``layers`` (mappings, or configs' explicit fields),
    then ``sets`` (``key=value``), and validate once.

    Raises :class:`ConfigError` naming each bad field.
    """
    data: dict[str, Any] = dict(defaults or {})
    for layer in layers:
        if layer is None:
            continue
        if isinstance(layer, TrainConfig):
            layer = {
                key: value
                for key, value in layer.as_json().items()
                if key in layer.model_fields_set
            }
        if not isinstance(layer, Mapping):
            raise ConfigError(
                f"a config must be a mapping or a TrainConfig, got {type(layer).__name__}"
            )
        data = merge(data, layer)
    data = apply_set(data, sets)
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"invalid training config: {format_validation_error(err)}") from None
