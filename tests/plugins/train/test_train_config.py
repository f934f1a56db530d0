"""TrainConfig: validation, layering (defaults, file, --set), and the optimizer and
scheduler factories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import visionatlas as va
from visionatlas_train.config import (
    OPTIMIZERS,
    SCHEDULERS,
    ConfigError,
    TrainConfig,
    apply_set,
    catalog_defaults,
    load_config_file,
    resolve_config,
)
from visionatlas_train.optim import build_optimizer, build_scheduler, parameter_groups

DEFAULTS = {"learning_rate": 0.1, "epochs": 4, "batch_size": 8, "optimizer": "adamw"}


def test_layers_apply_in_order_and_are_validated_once(tmp_path: Path) -> None:
    spec = va.get_architecture("classification", "resnet18")
    defaults = catalog_defaults(spec.hyperparameters)
    assert defaults["optimizer"] == spec.hyperparameters.optimizer
    file = tmp_path / "train.yaml"
    file.write_text("epochs: 7\noptimizer:\n  name: sgd\n  params: {momentum: 0.5}\n")
    config = resolve_config(
        defaults,
        load_config_file(file),
        sets=["epochs=3", "optimizer.params.nesterov=true", "scheduler=step", "input_size=64"],
    )
    assert config.epochs == 3  # --set beats the file, which beats the catalog
    assert config.learning_rate == spec.hyperparameters.learning_rate
    assert config.batch_size == spec.hyperparameters.batch_size
    assert config.optimizer.name == "sgd"
    assert config.optimizer.keyword_arguments() == {"momentum": 0.5, "nesterov": True}
    assert config.scheduler.name == "step"
    assert config.input_size == (64, 64)
    # naming another optimizer drops the previous one's params
    switched = resolve_config(defaults, load_config_file(file), sets=["optimizer=adam"])
    assert switched.optimizer.name == "adam"
    assert switched.optimizer.params == {}
    # the resolved config round-trips through its JSON form
    assert resolve_config(config.as_json()) == config
    json_file = tmp_path / "c.json"
    json_file.write_text(json.dumps({"optimizer": {"class": "torch.optim.NAdam"}}))
    by_class = resolve_config(DEFAULTS, load_config_file(json_file))
    assert by_class.optimizer.resolve_class() is torch.optim.NAdam


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["optimizer=adamx"], r"unknown optimizer 'adamx'; did you mean 'adam' or 'adamw'"),
        (["scheduler=cosin"], r"unknown scheduler 'cosin'; did you mean 'cosine'"),
        (["lerning_rate=0.1"], r"lerning_rate: unknown setting; did you mean 'learning_rate'"),
        (["learning_rate=0"], r"learning_rate: Input should be greater than 0"),
        (["learning_rate=NaN"], r"learning_rate"),
        (['dropout="0.3"'], r"dropout: Input should be a valid number"),
        (["freeze_backbone=yes"], r"freeze_backbone: Input should be a valid boolean"),
        (["epochs=2.5"], r"epochs: Input should be a valid integer"),
        (["optimizer.params.lr=1"], r"must not set 'lr'.*set learning_rate instead"),
        (["optimizer.params.momentun=0.9"], r"AdamW has no parameter 'momentun'"),
        (["optimizer.class=torch.nn.Linear"], r"not a torch.optim.Optimizer subclass"),
        (["optimizer.class=nowhere.Thing"], r"cannot be imported"),
        (["scheduler.params.gama=0.5", "scheduler.name=step"], r"did you mean 'gamma'"),
        (["probe_epochs=4"], r"probe_epochs \(4\) must be less than epochs \(4\)"),
        (["probe_epochs=1", "freeze_backbone=true"], r"set one of them"),
        (["probe_learning_rate=0.1"], r"probe_epochs is 0"),
        (["scheduler=plateau", "warmup_epochs=1"], r"plateau scheduler cannot follow"),
        (["scheduler=onecycle", "warmup_epochs=1"], r"onecycle warms up by itself"),
        (["precision=16"], r"precision: Input should be '32', 'bf16-mixed' or '16-mixed'"),
        (["strategy=horovod"], r"strategy: Input should be 'auto', 'ddp' or 'fsdp'"),
        (["devices=0"], r"devices must be 'auto' or a positive int"),
        (["input_size=0"], r"input_size sides must be from 1 to 4096"),
        (["model.dropout=0.2"], r"set dropout at the top level"),
        (["epochs"], r"--set expects KEY=VALUE"),
        (["epochs.value=3"], r"epochs is 4, which has no field 'value'"),
    ],
)
def test_bad_settings_name_the_field(sets: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_config(DEFAULTS, sets=sets)


def test_config_files_must_be_mappings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"does not exist"):
        load_config_file(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"must hold a mapping of settings, not a list"):
        load_config_file(tmp_path / "list.yaml")
    (tmp_path / "bad.json").write_text("{epochs: 1")
    with pytest.raises(ConfigError, match=r"not valid JSON"):
        load_config_file(tmp_path / "bad.json")


def test_set_values_are_json_or_text() -> None:
    data = apply_set(
        {"optimizer": "adamw", "early_stopping": 3},
        ["optimizer.name=sgd", "precision=bf16-mixed", "early_stopping.monitor=val/loss",
         "model.pretrained=false", "gradient_clip=null", "learning_rate=1e-3"],
    )  # fmt: skip
    assert data == {
        "optimizer": {"name": "sgd"},
        "precision": "bf16-mixed",
        "early_stopping": {"patience": 3, "monitor": "val/loss"},
        "model": {"pretrained": False},
        "gradient_clip": None,
        "learning_rate": 1e-3,
    }


def test_schema_exports_every_setting() -> None:
    schema = TrainConfig.model_json_schema(by_alias=True)
    assert schema["additionalProperties"] is False
    for name in ("optimizer", "scheduler", "probe_epochs", "precision", "strategy", "mixup"):
        assert name in schema["properties"]
    assert "class" in schema["$defs"]["OptimizerConfig"]["properties"]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_name_builds(name: str) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    config = resolve_config(DEFAULTS, sets=[f"optimizer={name}", "weight_decay=0.01"])
    optimizer = build_optimizer(config, model)
    assert type(optimizer).__name__.lower() == name
    decays = sorted(group["weight_decay"] for group in optimizer.param_groups)
    assert decays == [0.0, 0.01]  # biases and norm weights are not decayed
    assert all(group["lr"] == 0.1 for group in optimizer.param_groups)
    if name == "sgd":
        assert optimizer.defaults["momentum"] == 0.9


def _trace(config: TrainConfig, steps: int, steps_per_epoch: int = 2) -> list[float]:
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(config, model)
    built = build_scheduler(
        config, optimizer, steps_per_epoch=steps_per_epoch, monitor="val/loss", mode="min"
    )
    lrs = []
    for step in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if built is None:
            continue
        if built["interval"] == "step":
            built["scheduler"].step()
        elif step % steps_per_epoch == steps_per_epoch - 1:
            args = (1.0,) if "monitor" in built else ()
            built["scheduler"].step(*args)
    return lrs


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_every_scheduler_name_builds_and_schedules(name: str) -> None:
    config = resolve_config(DEFAULTS, sets=[f"scheduler={name}"])
    lrs = _trace(config, 8)
    assert all(0.0 <= lr <= 0.1 + 1e-12 for lr in lrs)
    if name in ("none", "plateau"):
        assert lrs == [0.1] * 8
    else:
        assert lrs[-1] < 0.1  # every schedule has lowered the rate by the end
    if name == "onecycle":
        assert lrs[0] == pytest.approx(0.1 / 25)
        assert max(lrs) == pytest.approx(0.1, rel=0.2)


def test_warmup_and_probe_phases_precede_the_schedule() -> None:
    warm = resolve_config(DEFAULTS, sets=["warmup_epochs=1", "scheduler=none"])
    assert _trace(warm, 4) == pytest.approx([0.001, 0.0505, 0.1, 0.1])
    probe = resolve_config(DEFAULTS, sets=["probe_epochs=1", "probe_learning_rate=0.5"])
    lrs = _trace(probe, 8)
    assert lrs[:2] == pytest.approx([0.5, 0.5])  # the probe's own rate for its epoch
    assert lrs[2] == pytest.approx(0.1)  # then the whole model from learning_rate, annealed
    assert lrs[3:] == sorted(lrs[3:], reverse=True)
    assert lrs[-1] < 0.1
    default_probe = resolve_config(DEFAULTS, sets=["probe_epochs=1"])
    assert _trace(default_probe, 1) == pytest.approx([1.0])  # 10 x learning_rate
    by_class = resolve_config(
        DEFAULTS,
        sets=["scheduler.class=torch.optim.lr_scheduler.StepLR", "scheduler.params.step_size=1",
              "scheduler.params.gamma=0.5"],
    )  # fmt: skip
    assert _trace(by_class, 6) == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_parameter_groups_skip_decay_for_vectors() -> None:
    model = torch.nn.Linear(3, 2)
    groups = parameter_groups(model.named_parameters(), 0.05)
    assert [len(g["params"]) for g in groups] == [1, 1]
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
