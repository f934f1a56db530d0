"""The engine on the toy task: real (tiny) runs, the run folder, checkpoints, resuming,
two-phase fine-tuning, mixup and label smoothing, bad inputs, the registry."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from conftest import FAST

import visionatlas as va
from visionatlas import Catalog
from visionatlas.lifecycle.checkpoint import MANIFEST_NAME, read_checkpoint
from visionatlas_train import ConfigError, TrainConfig, TrainError, evaluate, train
from visionatlas_train.checkpoint_io import VisionAtlasCheckpointIO
from visionatlas_train.config import resolve_config
from visionatlas_train.finetuning import TwoPhaseFinetuning, backbone_parameters

HERE = Path(__file__).parent


def _rows(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((run / "metrics.csv").read_text())))


def test_a_run_learns_and_writes_a_readable_folder(
    toy_catalog: Catalog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    result = train("toyclass", "tiny", "builtin:blobs", {**FAST, "epochs": 3}, out=run)
    err = capsys.readouterr().err
    assert "GPU available" not in err
    assert "Tip" not in err
    lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 3
    assert lines[0].startswith("epoch 1/3  train/loss")
    assert "done: 3 epochs" in err
    rows = _rows(run)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    losses = [float(r["train/loss"]) for r in rows]
    assert losses[-1] < losses[0]  # it learns
    assert float(rows[-1]["val/acc1"]) > 0.9
    assert list(rows[0])[:4] == ["epoch", "step", "lr", "time_s"]
    for name in ("config.json", "labels.json", "summary.json", "val_confmat.csv"):
        assert (run / name).is_file(), name
    assert (run / "plots" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert (run / "plots" / "acc1.png").is_file()
    stored = json.loads((run / "config.json").read_text())
    assert stored["task"] == "toyclass"
    assert stored["config"]["epochs"] == 3
    assert stored["config"]["learning_rate"] == 0.01  # the catalog default of tiny
    assert json.loads((run / "labels.json").read_text())["labels"] == ["red", "green", "blue"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_completed"] == 3
    assert summary["best"]["monitor"] == "val/acc1"
    confmat = (run / "val_confmat.csv").read_text().splitlines()
    assert confmat[0] == ",red,green,blue"
    # checkpoints: the project's format, with the build info and the labels
    last = read_checkpoint(run / "checkpoints" / "last")
    assert last.epoch == 3
    assert last.build_info is not None
    assert last.build_info.architecture == "tiny"
    assert last.extra["labels"] == [
        "red",
        "green",
        "blue",
    ]
    best = va.load_checkpoint(run / "checkpoints" / "best")
    assert best.epoch == result.best_epoch
    assert best.metrics["val/acc1"] == result.metrics["val/acc1"]
    assert result.model.training is False
    images = torch.rand(4, 3, 16, 16)
    assert best.model is not None
    with torch.no_grad():
        assert torch.equal(best.model.eval()(images), result.model(images))  # best weights
    for path in run.rglob("*"):  # nothing pickled anywhere in the run
        assert path.suffix not in (".ckpt", ".pt", ".pth", ".pkl"), path


def test_a_stopped_run_resumes_exactly_after_a_kill(toy_catalog: Catalog, tmp_path: Path) -> None:
    """A subprocess is killed (SIGKILL) in its third epoch; resuming gives the same model as
    a run that was never stopped: loops, optimizer, schedule and random state restored."""
    settings = {
        **FAST, "epochs": 4, "mixup": 0.4, "dropout": 0.2, "batch_size": 8,
        "precise_bn_batches": 1,
    }  # fmt: skip
    whole = train("toyclass", "tiny", "builtin:blobs#24", settings, out=tmp_path / "whole")
    run = tmp_path / "killed"
    # an epoch reads 24 train items, 8 for the batch-norm statistics and 6 val items
    done = _train_in_subprocess(run, settings, kill_after=38 * 2 + 10)  # in epoch 3
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert [r["epoch"] for r in _rows(run)] == ["1", "2"]
    assert read_checkpoint(run / "checkpoints" / "last").epoch == 2
    with pytest.raises(TrainError, match=r"already holds a run; continue it with --resume"):
        train("toyclass", "tiny", "builtin:blobs#24", settings, out=run)
    resumed = train(resume=run, verbose=False)
    assert [r["epoch"] for r in _rows(run)] == ["1", "2", "3", "4"]
    assert resumed.epochs_completed == 4
    for (name, a), b in zip(
        whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert _rows(run)[3]["train/loss"] == _rows(tmp_path / "whole")[3]["train/loss"]


def _train_in_subprocess(
    run: Path, settings: dict[str, object], *, kill_after: int, sig: int = signal.SIGKILL
) -> subprocess.CompletedProcess[str]:
    """Train the toy task in a subprocess that sends itself ``sig`` at item ``kill_after``."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(HERE)!r})
        import torch, train_toy
        torch.set_num_threads(1)
        from visionatlas import Catalog, use_catalog
        from visionatlas_train import train
        with use_catalog(Catalog(plugins=[train_toy])):
            train("toyclass", "tiny", "builtin:blobs#24", {settings!r}, out={str(run)!r})
        """
    )
    env = {**os.environ, "TOY_KILL_AFTER_ITEMS": str(kill_after), "TOY_KILL_SIGNAL": str(sig)}
    return subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )


def test_an_interrupted_run_says_how_to_resume(toy_catalog: Catalog, tmp_path: Path) -> None:
    run = tmp_path / "run"
    settings = {**FAST, "epochs": 3, "precise_bn_batches": 0}  # 30 items an epoch
    done = _train_in_subprocess(run, settings, kill_after=40, sig=signal.SIGINT)
    assert done.returncode != 0
    assert f"interrupted in epoch 2; continue the run with: visionatlas train --resume {run}" in (
        done.stderr
    )
    assert [r["epoch"] for r in _rows(run)] == ["1"]
    assert (run / "plots" / "loss.png").is_file()  # the plots of the finished epochs
    resumed = train(resume=run, verbose=False)
    assert resumed.epochs_completed == 3


class _Crash(pl.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # type: ignore[no-untyped-def]
        raise RuntimeError("crashed in the first epoch")


def test_a_run_that_crashed_before_its_first_checkpoint_starts_over(
    toy_catalog: Catalog, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="crashed in the first epoch"):
        train("toyclass", "tiny", "builtin:blobs#12", FAST, out=run, callbacks=[_Crash()])
    assert (run / "config.json").is_file()
    assert not (run / "checkpoints").exists()
    result = train(resume=run, verbose=False)
    assert result.epochs_completed == 2


def test_resume_refuses_other_settings(toy_catalog: Catalog, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train("toyclass", "tiny", "builtin:blobs#12", {**FAST, "epochs": 1}, out=run, verbose=False)
    with pytest.raises(ConfigError, match=r"cannot change learning_rate"):
        train(resume=run, sets=["learning_rate=0.5"])
    with pytest.raises(ConfigError, match=r"trains on builtin:blobs#12, not on builtin:blobs"):
        train(data="builtin:blobs", resume=run)
    finished = train(resume=run, sets=["num_workers=0"], verbose=False)  # runtime keys may change
    assert finished.epochs_completed == 1  # nothing left to do
    with pytest.raises(TrainError, match=r"is not a training run"):
        train(resume=tmp_path)


class _PhaseSpy(pl.Callback):
    """Records, at each epoch's first batch, whether the backbone trains and the LRs."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, bool, list[float]]] = []
        self.backbones: list[dict[str, torch.Tensor]] = []
        self.heads: list[dict[str, torch.Tensor]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # type: ignore[no-untyped-def]
        if batch_idx == 0:
            model = pl_module.model
            trainable = any(p.requires_grad for p in model.backbone.parameters())
            lrs = [group["lr"] for group in trainer.optimizers[0].param_groups]
            self.seen.append((trainer.current_epoch, trainable, lrs))
            self.backbones.append({n: p.clone() for n, p in model.backbone.named_parameters()})
            self.heads.append({n: p.clone() for n, p in model.head.named_parameters()})


def test_two_phase_fine_tuning_freezes_then_trains_everything(
    toy_catalog: Catalog, tmp_path: Path
) -> None:
    spy = _PhaseSpy()
    settings = {**FAST, "epochs": 3, "probe_epochs": 1, "probe_learning_rate": 0.05,
                "learning_rate": 0.002, "scheduler": "none"}  # fmt: skip
    train("toyclass", "tiny", "builtin:blobs", settings, out=tmp_path / "r", callbacks=[spy])
    assert [(epoch, trainable) for epoch, trainable, _ in spy.seen] == [
        (0, False),
        (1, True),
        (2, True),
    ]
    assert all(lr == pytest.approx(0.05) for lr in spy.seen[0][2])  # the probe's rate
    assert all(lr == pytest.approx(0.002) for lr in spy.seen[1][2])  # then learning_rate
    # the probe epoch changed the head only; the next epoch changed the backbone too
    first, second, third = spy.backbones
    assert all(torch.equal(first[n], second[n]) for n in first)
    assert any(not torch.equal(second[n], third[n]) for n in second)
    assert any(not torch.equal(spy.heads[0][n], spy.heads[1][n]) for n in spy.heads[0])


def test_probe_changes_only_the_head(toy_catalog: Catalog) -> None:
    model = va.create_model("toyclass", "tiny", num_classes=3)
    frozen = backbone_parameters(model)
    assert {id(p) for p in frozen} == {id(p) for p in model.backbone.parameters()}
    assert all(p.requires_grad for p in model.parameters())  # found without side effects
    with pytest.raises(ValueError, match=r"at least 1"):
        TwoPhaseFinetuning(0)


def test_mixup_and_label_smoothing_change_the_loss(toy_catalog: Catalog, tmp_path: Path) -> None:
    base = {**FAST, "epochs": 1, "limit_train_batches": 2, "train_metrics": True}

    def first_loss(name: str, **extra: object) -> tuple[float, dict[str, str]]:
        result = train(
            "toyclass", "tiny", "builtin:blobs", {**base, **extra}, out=tmp_path / name,
            verbose=False,
        )  # fmt: skip
        row = _rows(result.run_dir)[0]
        return float(row["train/loss"]), row

    plain, row = first_loss("plain")
    smoothed, _ = first_loss("smooth", label_smoothing=0.3)
    mixed, mixed_row = first_loss("mixup", mixup=1.0)
    assert smoothed > plain  # smoothing raises the floor of the cross-entropy
    assert mixed != plain
    assert "train/acc1" in row
    assert "train/acc1" not in mixed_row


def test_early_stopping_and_clipping(toy_catalog: Catalog, tmp_path: Path) -> None:
    result = train(
        "toyclass", "tiny", "builtin:blobs",
        {**FAST, "epochs": 6, "early_stopping": {"patience": 1, "monitor": "val/acc1"},
         "gradient_clip": 0.5, "accumulate_grad_batches": 2},
        out=tmp_path / "r", verbose=False,
    )  # fmt: skip
    assert result.stopped_early
    assert result.epochs_completed < 6
    assert json.loads((result.run_dir / "summary.json").read_text())["stopped_early"] is True


def test_bad_inputs_fail_before_training(toy_catalog: Catalog, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"toy data 'nothing' does not exist"):
        train("toyclass", "tiny", "nothing", FAST, out=tmp_path / "a")
    assert not (tmp_path / "a").exists()  # nothing created for a run that cannot start
    with pytest.raises(ConfigError, match=r"precision 16-mixed needs a CUDA GPU.*bf16-mixed"):
        train("toyclass", "tiny", "builtin:blobs", {**FAST, "precision": "16-mixed",
              "accelerator": "cpu"}, out=tmp_path / "b")  # fmt: skip
    for setting, instead in (
        ({"strategy": "fsdp"}, "strategy auto or ddp"),
        ({"sync_batchnorm": True}, "sync_batchnorm false"),
    ):
        with pytest.raises(ConfigError, match=f"needs a CUDA GPU.*use {instead}"):
            train(
                "toyclass", "tiny", "builtin:blobs", {**FAST, **setting, "accelerator": "cpu"},
                out=tmp_path / "g",
            )  # fmt: skip
    with pytest.raises(va.UnknownArchitectureError, match=r"did you mean"):
        train("toyclass", "tinny", "builtin:blobs", FAST, out=tmp_path / "c")
    with pytest.raises(ConfigError, match=r"--register takes NAME@VERSION"):
        train("toyclass", "tiny", "builtin:blobs", FAST, out=tmp_path / "d", register="nover")
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "notes.txt").write_text("mine")
    with pytest.raises(TrainError, match=r"is not empty"):
        train("toyclass", "tiny", "builtin:blobs", FAST, out=tmp_path / "e")
    with pytest.raises(ConfigError, match=r"several processes needs --out"):
        train("toyclass", "tiny", "builtin:blobs", {**FAST, "devices": 2})
    with pytest.raises(TrainError, match=r"num_outputs=5 but builtin:blobs has 3 classes"):
        train("toyclass", "tiny", "builtin:blobs", {**FAST, "model": {"num_outputs": 5}},
              out=tmp_path / "f")  # fmt: skip


def test_register_and_evaluate(toy_catalog: Catalog, tmp_path: Path, registry_dir: Path) -> None:
    run = tmp_path / "run"
    result = train(
        "toyclass", "tiny", "builtin:blobs", FAST, out=run, register="blobs@1.0.0",
        registry=registry_dir, verbose=False,
    )  # fmt: skip
    entry = result.registered
    assert entry is not None
    assert entry.ref == "blobs@1.0.0"
    assert set(entry.tags) == {"trained", "toyclass"}
    assert entry.metrics["val/acc1"] == result.metrics["val/acc1"]
    assert entry.metrics["training"]["labels"] == ["red", "green", "blue"]
    loaded = va.ModelRegistry(registry_dir).load("blobs", "1.0.0")
    images = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(images), result.model(images))
    from_run = evaluate(run, "builtin:blobs")
    from_registry = evaluate("blobs@1.0.0", "builtin:blobs", registry=registry_dir)
    from_checkpoint = evaluate(run / "checkpoints" / "best", "builtin:blobs")
    for other in (from_registry, from_checkpoint):  # one model, three ways to name it
        assert other.metrics == pytest.approx(from_run.metrics, rel=1e-5)
    assert set(from_run.metrics) == {"loss", "acc1"}
    assert sum(map(sum, from_run.matrices["confmat"])) == from_run.num_images == 24
    with pytest.raises(TrainError, match=r"already holds blobs@1.0.0"):
        train("toyclass", "tiny", "builtin:blobs", FAST, out=tmp_path / "again",
              register="blobs@1.0.0", registry=registry_dir)  # fmt: skip
    with pytest.raises(TrainError, match=r"no training run or checkpoint at"):
        evaluate(str(tmp_path / "missing"), "builtin:blobs")


def test_checkpoint_io_round_trips_lightnings_dict(toy_catalog: Catalog, tmp_path: Path) -> None:
    model = va.create_model("toyclass", "tiny", num_classes=3)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.rand(2, 3, 16, 16)).sum().backward()
    optimizer.step()
    io_ = VisionAtlasCheckpointIO(model)
    checkpoint = {
        "epoch": 1,
        "global_step": 12,
        "pytorch-lightning_version": "2.6.6",
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "optimizer_states": [optimizer.state_dict()],
        "loops": {"fit_loop": {"epoch_progress": {"total": {"completed": 2}}}},
        "visionatlas": {"metrics": {"val/acc1": 0.5}, "extra": {"labels": ["a", "b", "c"]}},
    }
    io_.save_checkpoint(checkpoint, tmp_path / "ck")
    summary = read_checkpoint(tmp_path / "ck")
    assert summary.epoch == 2
    assert summary.metrics == {"val/acc1": 0.5}
    back = io_.load_checkpoint(tmp_path / "ck")
    assert back["loops"] == checkpoint["loops"]
    assert back["global_step"] == 12
    for key, value in checkpoint["state_dict"].items():
        assert torch.equal(back["state_dict"][key], value)
    restored = torch.optim.AdamW(model.parameters())
    restored.load_state_dict(back["optimizer_states"][0])
    assert restored.state_dict()["param_groups"] == optimizer.state_dict()["param_groups"]
    with pytest.raises(FileNotFoundError):
        io_.load_checkpoint(tmp_path / "nothing")
    va.save_checkpoint(model, path=tmp_path / "plain")
    with pytest.raises(va.CheckpointError, match=r"holds no training state"):
        io_.load_checkpoint(tmp_path / "plain")
    io_.remove_checkpoint(tmp_path / "ck")
    assert not (tmp_path / "ck").exists()
    assert (tmp_path / "plain" / MANIFEST_NAME).is_file()
    with pytest.raises(va.CheckpointError, match=r"not built by visionatlas"):
        VisionAtlasCheckpointIO(torch.nn.Linear(2, 2))


def test_config_objects_and_model_configs(toy_catalog: Catalog, tmp_path: Path) -> None:
    config = TrainConfig(epochs=1, num_workers=0, dropout=0.25)
    result = train(
        "toyclass", "tiny", "builtin:blobs#12", config, out=tmp_path / "r", verbose=False,
        model_config={"freeze_backbone": False},
    )  # fmt: skip
    assert result.config.dropout == 0.25
    assert result.config.batch_size == 8  # unset: the catalog default of tiny
    info = result.model.visionatlas_info  # type: ignore[union-attr]
    assert info.config["dropout"] == 0.25
    layered = resolve_config({"epochs": 5}, config)
    assert layered.epochs == 1


def test_a_diverging_run_stops_with_a_clear_error(
    toy_catalog: Catalog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from visionatlas.cli import main
    from visionatlas_train import DivergedError

    settings = {**FAST, "learning_rate": 1e30, "optimizer": "sgd"}
    with pytest.raises(DivergedError, match=r"diverged in epoch 1: the loss is nan"):
        train("toyclass", "tiny", "builtin:blobs", settings, out=tmp_path / "r", verbose=False)
    assert not (tmp_path / "r" / "checkpoints").exists()  # the diverged epoch is not saved
    argv = ["train", "toyclass", "tiny", "builtin:blobs", "--out", str(tmp_path / "cli")]
    sets = [f"{k}={json.dumps(v)}" for k, v in settings.items()]
    assert main([*argv, *[a for s in sets for a in ("--set", s)], "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("visionatlas train: error: training diverged in epoch 1")
    assert err.count("\n") == 1
