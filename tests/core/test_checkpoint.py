"""Checkpoints: round trips, verification, foreign files and crash-safe saving."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.optim.swa_utils import update_bn

import visionatlas as va
from visionatlas.lifecycle import checkpoint, checkpoint_load
from visionatlas.lifecycle._statecodec import StateCodecError, decode_state, encode_state
from visionatlas.lifecycle.checkpoint import MANIFEST_NAME, read_checkpoint

ARCH = ("classification", "mobilenet_v3_small")
IMAGES = (2, 3, 64, 64)


def _images() -> torch.Tensor:
    return torch.rand(*IMAGES, generator=torch.Generator().manual_seed(1))


def _trained(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer, Any]:
    """A small model after two AdamW steps, with a step LR schedule."""
    torch.manual_seed(seed)
    model = va.create_model(*ARCH, num_classes=3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    for _ in range(2):
        optimizer.zero_grad()
        model(_images()).logsumexp(dim=1).mean().backward()
        optimizer.step()
        scheduler.step()
    # batch-norm statistics from more images, so that outputs depend on the input (with
    # its initial statistics a fresh MobileNetV3 answers the same for every image)
    generator = torch.Generator().manual_seed(3)
    update_bn([torch.rand(4, *IMAGES[1:], generator=generator) for _ in range(2)], model)
    model.eval()
    with torch.no_grad():
        out = model(_images())
    assert float((out[0] - out[1]).abs().max()) > 1e-3
    return model, optimizer, scheduler


def _data_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.safetensors"))


def test_round_trip_restores_model_optimizer_scheduler_epoch_and_metrics(tmp_path: Path) -> None:
    model, optimizer, scheduler = _trained()
    metrics = {"accuracy": torch.tensor(0.75), "loss": float("nan"), "per_class": [0.5, 1.0]}
    saved = va.save_checkpoint(
        model, optimizer, 7, metrics, tmp_path / "v1.0.0", scheduler=scheduler, extra={"$k": 1}
    )
    assert saved == tmp_path / "v1.0.0"
    manifest = json.loads((saved / MANIFEST_NAME).read_text())  # strict JSON, no NaN token
    assert manifest["format"] == "visionatlas.lifecycle.checkpoint"
    assert manifest["epoch"] == 7

    torch.manual_seed(123)
    fresh = va.create_model(*ARCH, num_classes=3)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    fresh_sched = torch.optim.lr_scheduler.StepLR(fresh_opt, step_size=1, gamma=0.5)
    loaded = va.load_checkpoint(saved, fresh, fresh_opt, scheduler=fresh_sched)

    assert loaded.model is fresh
    assert loaded.epoch == 7
    assert loaded.metrics["accuracy"] == 0.75
    assert math.isnan(loaded.metrics["loss"])
    assert loaded.metrics["per_class"] == [0.5, 1.0]
    assert loaded.extra == {"$k": 1}
    assert loaded.build_info == model.visionatlas_info
    assert loaded.versions["torch"] == torch.__version__
    assert loaded.optimizer_class == "torch.optim.adamw.AdamW"
    with torch.no_grad():
        assert torch.equal(fresh.eval()(_images()), model(_images()))
    saved_state = model.state_dict()
    assert all(torch.equal(v, saved_state[k]) for k, v in fresh.state_dict().items())
    before, after = optimizer.state_dict(), fresh_opt.state_dict()
    assert after["param_groups"] == before["param_groups"]  # betas come back as a tuple
    for index, state in before["state"].items():
        for key, value in state.items():
            assert torch.equal(after["state"][index][key], value), (index, key)
    assert fresh_sched.state_dict() == scheduler.state_dict()


def test_fresh_process_rebuilds_the_model_from_the_checkpoint(tmp_path: Path) -> None:
    model, optimizer, _ = _trained()
    va.save_checkpoint(model, optimizer, 1, {"loss": 0.5}, tmp_path / "ckpt")
    with torch.no_grad():
        expected = model(_images())
    code = textwrap.dedent(
        f"""
        import json, sys, torch
        import visionatlas as va
        checkpoint = va.load_checkpoint({str(tmp_path / "ckpt")!r})
        images = torch.rand(*{IMAGES!r}, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            out = checkpoint.model.eval()(images)
        print(json.dumps({{"out": out.tolist(), "epoch": checkpoint.epoch,
                           "type": type(checkpoint.model).__name__}}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout)
    assert data["epoch"] == 1
    assert data["type"] == "BackboneHeadModel"
    assert torch.equal(torch.tensor(data["out"]), expected)


def test_composed_model_and_plain_module(tmp_path: Path) -> None:
    composed = va.compose_model("mobilenet_v3_small", "gem", num_outputs=2).eval()
    va.save_checkpoint(composed, path=tmp_path / "composed")
    rebuilt = va.load_checkpoint(tmp_path / "composed").model
    assert rebuilt is not None
    expected = composed.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in rebuilt.state_dict().items())
    assert rebuilt.state_dict().keys() == expected.keys()

    tied = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    tied[1].weight = tied[0].weight  # tied weights are stored once and tied again on load
    va.save_checkpoint(tied, path=tmp_path / "plain")
    with pytest.raises(va.CheckpointError, match=r"records no build info.*pass model="):
        va.load_checkpoint(tmp_path / "plain")
    target = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    target[1].weight = target[0].weight
    va.load_checkpoint(tmp_path / "plain", target)
    assert torch.equal(target[0].weight, tied[0].weight)
    assert target[1].weight is target[0].weight
    with pytest.raises(va.CheckpointError, match=r"do not fit the model"):
        va.load_checkpoint(tmp_path / "plain", nn.Sequential(nn.Linear(4, 5), nn.Linear(5, 4)))


def test_optimizer_mismatch_and_unsupported_state(tmp_path: Path) -> None:
    model, optimizer, _ = _trained()
    va.save_checkpoint(model, optimizer, 0, {}, tmp_path / "c")
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(va.CheckpointError, match=r"state of a torch.optim.adamw.AdamW, not of a"):
        va.load_checkpoint(tmp_path / "c", model, sgd)
    va.save_checkpoint(model, path=tmp_path / "no-opt")
    with pytest.raises(va.CheckpointError, match=r"holds no optimizer state"):
        va.load_checkpoint(tmp_path / "no-opt", model, optimizer)

    class Weird:
        def state_dict(self) -> dict[str, Any]:
            return {"fn": print}

    with pytest.raises(va.CheckpointError, match=r"cannot store builtins.builtin_function.*'sch"):
        va.save_checkpoint(model, path=tmp_path / "weird", scheduler=Weird())
    with pytest.raises(va.CheckpointError, match=r"JSON values"):
        va.save_checkpoint(model, metrics={"bad": object()}, path=tmp_path / "weird")
    with pytest.raises(TypeError, match=r"needs path"):
        va.save_checkpoint(model)


def test_training_state_round_trips_without_pickling(tmp_path: Path) -> None:
    model, optimizer, _ = _trained()
    state = {
        "epoch": 4,
        "loops": {"fit_loop": {"epoch_progress": {"total": {"ready": 5}}}},
        "optimizer_states": [optimizer.state_dict()],
        "callbacks": {"Best{'monitor': 'val/acc1'}": {"best": torch.tensor(0.75), "k": None}},
        "pair": (1, "two"),
    }
    saved = va.save_checkpoint(model, optimizer, 4, {"acc": 0.5}, tmp_path / "c", state=state)
    manifest = json.loads((saved / MANIFEST_NAME).read_text())
    assert manifest["state"]["epoch"] == 4
    assert read_checkpoint(saved).state is None  # reading loads no tensor
    loaded = va.load_checkpoint(saved)  # the model is rebuilt; the state comes back whole
    assert loaded.state["pair"] == (1, "two")
    assert loaded.state["loops"] == state["loops"]
    best = loaded.state["callbacks"]["Best{'monitor': 'val/acc1'}"]
    assert best["k"] is None
    assert torch.equal(best["best"], torch.tensor(0.75))
    restored = loaded.state["optimizer_states"][0]
    for index, values in optimizer.state_dict()["state"].items():
        for key, value in values.items():
            assert torch.equal(restored["state"][index][key], value)
    assert restored["param_groups"] == optimizer.state_dict()["param_groups"]
    # the optimizer's own state (save_checkpoint(optimizer=...)) is still restored alongside
    fresh = torch.optim.AdamW(loaded.model.parameters(), lr=1e-3)  # type: ignore[union-attr]
    va.load_checkpoint(saved, loaded.model, fresh)
    assert fresh.state_dict()["param_groups"] == optimizer.state_dict()["param_groups"]
    assert va.load_checkpoint(tmp_path / "c").state is not None
    va.save_checkpoint(model, path=tmp_path / "plain")
    assert va.load_checkpoint(tmp_path / "plain").state is None
    assert "state" not in json.loads((tmp_path / "plain" / MANIFEST_NAME).read_text())
    with pytest.raises(va.CheckpointError, match=r"training state: cannot store .*'training.fn'"):
        va.save_checkpoint(model, path=tmp_path / "bad", state={"fn": print})


def test_state_codec_round_trips_awkward_structures() -> None:
    value = {
        0: {"step": torch.tensor(3.0), "buffers": [torch.ones(2), torch.zeros(1)]},
        "pair": (1, 2.5, None),
        "$weird": True,
        "inf": float("-inf"),
    }
    structure, tensors = encode_state(value, "opt")
    assert sorted(tensors) == ["opt.0.buffers.0", "opt.0.buffers.1", "opt.0.step"]
    json.dumps(structure, allow_nan=False)  # plain JSON
    back = decode_state(json.loads(json.dumps(structure)), tensors)
    assert back["pair"] == (1, 2.5, None)
    assert back["$weird"] is True
    assert back["inf"] == float("-inf")
    assert torch.equal(back[0]["buffers"][0], torch.ones(2))
    with pytest.raises(StateCodecError, match=r"missing tensor"):
        decode_state({"$tensor": "nope"}, {})
    with pytest.raises(StateCodecError, match=r"unknown tag"):
        decode_state({"$eval": "__import__('os')", "x": 1}, {})


# -- damaged and foreign files --------------------------------------------------------------
@pytest.fixture
def saved(tmp_path: Path) -> Path:
    model, optimizer, _ = _trained()
    return va.save_checkpoint(model, optimizer, 3, {"acc": 0.5}, tmp_path / "ckpt")


def test_truncated_data_file_is_named(saved: Path) -> None:
    model_file = next(p for p in _data_files(saved) if p.name.startswith("model-"))
    data = model_file.read_bytes()
    model_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        va.CorruptCheckpointError, match=rf"{model_file.name} is corrupt.*truncated"
    ):
        va.load_checkpoint(saved)
    with pytest.raises(va.CorruptCheckpointError) as info:
        read_checkpoint(saved)
    assert info.value.path == model_file


def test_tampered_data_file_same_size_is_detected(saved: Path) -> None:
    state_file = next(p for p in _data_files(saved) if p.name.startswith("state-"))
    data = bytearray(state_file.read_bytes())
    data[-1] ^= 0xFF  # one bit pattern in the last tensor byte; the size stays
    state_file.write_bytes(bytes(data))
    with pytest.raises(va.CorruptCheckpointError, match=rf"{state_file.name} is corrupt"):
        va.load_checkpoint(saved)


def test_tampered_truncated_or_missing_manifest_parts(saved: Path) -> None:
    manifest_path = saved / MANIFEST_NAME
    original = manifest_path.read_text()
    manifest = json.loads(original)
    manifest["epoch"] = 99
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(va.CorruptCheckpointError, match=r"checkpoint.json: the manifest was modif"):
        va.load_checkpoint(saved)
    manifest_path.write_text(original[: len(original) // 2])
    with pytest.raises(va.CorruptCheckpointError, match=r"not valid JSON.*truncated"):
        va.load_checkpoint(saved)
    manifest_path.write_text(original)
    next(p for p in _data_files(saved) if p.name.startswith("model-")).unlink()
    with pytest.raises(va.CorruptCheckpointError, match=r"model-\w+\.safetensors is missing"):
        va.load_checkpoint(saved)


def test_foreign_files_get_a_clear_error(tmp_path: Path) -> None:
    weights = tmp_path / "weights.pt"
    torch.save({"w": torch.ones(1)}, weights)
    with pytest.raises(va.CheckpointError, match=r"weights.pt is a file, not a visionatlas chec"):
        va.load_checkpoint(weights)
    tensors = tmp_path / "model.safetensors"
    save_file({"w": torch.ones(1)}, tensors)
    with pytest.raises(va.CheckpointError, match=r"read_state_dict"):
        va.load_checkpoint(tensors)
    (tmp_path / "empty").mkdir()
    with pytest.raises(va.CheckpointError, match=r"has no checkpoint.json"):
        va.load_checkpoint(tmp_path / "empty")
    other = tmp_path / "other"
    other.mkdir()
    (other / MANIFEST_NAME).write_text(json.dumps({"format": "lightning", "epoch": 1}))
    with pytest.raises(va.CheckpointError, match=r"not a visionatlas checkpoint manifest"):
        va.load_checkpoint(other)
    with pytest.raises(va.CheckpointError, match=r"no such directory"):
        va.load_checkpoint(tmp_path / "missing")
    with pytest.raises(va.CheckpointError, match=r"it is a file"):
        va.save_checkpoint(nn.Linear(1, 1), path=weights)


def test_the_manifest_path_itself_is_accepted(saved: Path) -> None:
    assert read_checkpoint(saved / MANIFEST_NAME).epoch == 3


# -- crash safety ---------------------------------------------------------------------------
_CRASHING_SAVE = """
import os, sys, torch
import safetensors.torch
import visionatlas as va
import visionatlas.lifecycle.files as files

where, path = sys.argv[1], sys.argv[2]
torch.manual_seed(5)
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))

def die():
    sys.stdout.flush()
    os._exit(17)

if where == "while-writing-weights":
    real = safetensors.torch.save_model
    def save_model(model, filename, *args, **kwargs):
        real(model, filename, *args, **kwargs)
        with open(filename, "r+b") as handle:  # half the bytes made it to disk
            handle.truncate(os.path.getsize(filename) // 2)
        die()
    safetensors.torch.save_model = save_model
elif where == "before-commit":
    files.write_bytes_atomic = lambda final, data: die()
elif where == "while-writing-manifest":
    real_replace = os.replace
    def replace(src, dst):
        if str(dst).endswith("checkpoint.json"):
            die()
        real_replace(src, dst)
    os.replace = replace
elif where == "after-commit":
    real_replace = os.replace
    def replace(src, dst):
        real_replace(src, dst)
        if str(dst).endswith("checkpoint.json"):
            die()
    os.replace = replace
va.save_checkpoint(model, None, 2, {"acc": 0.9}, path)
print("completed")
"""


def _small(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))


@pytest.mark.parametrize(
    ("where", "survivor_epoch"),
    [
        ("while-writing-weights", 1),
        ("before-commit", 1),
        ("while-writing-manifest", 1),
        ("after-commit", 2),
    ],
)
def test_a_save_killed_halfway_leaves_a_loadable_checkpoint(
    tmp_path: Path, where: str, survivor_epoch: int
) -> None:
    old, new = _small(0), _small(5)  # the crashing process saves ``new``
    path = va.save_checkpoint(old, None, 1, {"acc": 0.5}, tmp_path / "ckpt")
    result = subprocess.run(
        [sys.executable, "-c", _CRASHING_SAVE, where, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 17, result.stderr[-3000:]
    assert "completed" not in result.stdout
    target = _small(9)
    survivor = va.load_checkpoint(path, target)
    assert survivor.epoch == survivor_epoch
    expected = old if survivor_epoch == 1 else new
    for got, want in zip(target.parameters(), expected.parameters(), strict=True):
        assert torch.equal(got, want)
    # the next save succeeds and sweeps what the crash left behind
    va.save_checkpoint(old, None, 3, {}, path)
    assert va.load_checkpoint(path, target).epoch == 3
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    kept = {f["name"] for f in manifest["files"].values()}
    assert set(os.listdir(path)) == kept | {MANIFEST_NAME, ".checkpoint.lock"}


def test_data_files_are_stored_under_their_checksum(saved: Path) -> None:
    manifest = json.loads((saved / MANIFEST_NAME).read_text())
    for record in manifest["files"].values():
        assert record["name"].split("-")[1].startswith(record["sha256"][:16])
    model_file = saved / manifest["files"]["model"]["name"]
    assert any(key.startswith("head.") for key in load_file(model_file))


# -- a reader racing a writer -----------------------------------------------------------------
_SAVING_LOOP = """
import sys, time, torch
import visionatlas as va

path, seconds = sys.argv[1], float(sys.argv[2])
models = []
for seed in range(3):
    torch.manual_seed(seed)
    models.append(torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.Linear(256, 8)))
print("ready", flush=True)
deadline, saves = time.monotonic() + seconds, 0
while time.monotonic() < deadline:
    va.save_checkpoint(models[saves % 3], None, saves % 3, {}, path)
    saves += 1
print(saves, flush=True)
"""


def _racing_small(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 256), nn.Linear(256, 8))


@pytest.mark.parametrize("lockable", [True, False], ids=["locked", "read-only-dir"])
def test_a_load_racing_saves_gets_a_whole_checkpoint_or_a_retryable_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lockable: bool
) -> None:
    if not lockable:  # as in a directory the reader cannot write to: no shared lock
        for module in (checkpoint, checkpoint_load):
            monkeypatch.setattr(module, "directory_lock", lambda *a, **k: nullcontext(False))
    path = va.save_checkpoint(_racing_small(0), None, 0, {}, tmp_path / "ckpt")
    expected = [_racing_small(seed).state_dict() for seed in range(3)]
    saver = subprocess.Popen(
        [sys.executable, "-c", _SAVING_LOOP, str(path), "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    loads, busy = 0, 0
    try:
        assert saver.stdout is not None
        assert saver.stdout.readline().strip() == "ready", saver.stderr
        while saver.poll() is None:
            target = _racing_small(9)
            try:
                found = va.load_checkpoint(path, target)
                assert va.read_checkpoint(path).epoch in (0, 1, 2)
            except va.CheckpointBusyError:
                busy += 1
                continue
            assert found.epoch is not None
            state = target.state_dict()
            assert all(torch.equal(state[k], v) for k, v in expected[found.epoch].items())
            loads += 1
        out, err = saver.communicate(timeout=60)
    finally:
        if saver.poll() is None:
            saver.kill()
    assert saver.returncode == 0, err[-3000:]
    assert int(out.strip()) > 20  # the saver really raced the loads
    assert loads > 20, (loads, busy)
    assert busy <= loads, (loads, busy)
