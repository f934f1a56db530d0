"""The registry survives a kill at every step of a write: nothing registered is ever lost.

A driver process imports torch once and, for every step ``k`` of an operation, forks a
child that runs the operation on a fresh copy of a registry and SIGKILLs itself just before
its ``k``-th file-system or commit step (``os.replace``, ``os.rename``, ``os.unlink``,
``os.fsync``, ``COMMIT``). The test then opens every copy and checks that each model still
loads with either its old or its new weights, before and after ``collect_garbage``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import visionatlas as va
from visionatlas.lifecycle.versioning import ModelRegistry, UnknownModelError, UnknownVersionError

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

_DRIVER = r"""
import json, os, shutil, signal, sqlite3, sys, traceback
import torch  # imported before forking; this process runs no torch op (no thread pools)
import visionatlas as va

spec = json.loads(sys.argv[1])
steps = {"count": 0, "at": 0}

def step():
    steps["count"] += 1
    if steps["count"] == steps["at"]:
        os.kill(os.getpid(), signal.SIGKILL)

def arm(at):
    steps["at"] = at
    def counted(function):
        def wrapper(*args, **kwargs):
            step()
            return function(*args, **kwargs)
        return wrapper
    for name in ("replace", "rename", "unlink", "remove", "fsync"):
        setattr(os, name, counted(getattr(os, name)))

    class Connection(sqlite3.Connection):
        def execute(self, sql, *args):
            if sql.strip().upper().startswith("COMMIT"):
                step()
            return super().execute(sql, *args)

    connect = sqlite3.connect
    sqlite3.connect = lambda *args, **kwargs: connect(*args, factory=Connection, **kwargs)

def run(registry, at):
    if spec["op"] == "delete":
        arm(at)
        registry.delete(spec["name"], "1.0.0")
    else:
        torch.manual_seed(spec["seed"])
        model = va.compose_model("mobilenet_v3_small", "linear", num_outputs=2)
        arm(at)
        registry.register(spec["name"], "1.0.0", model, overwrite=True)

results = []
for at in range(1, 200):
    work = os.path.join(spec["work"], f"step{at:03d}")
    shutil.copytree(spec["pristine"], work)
    pid = os.fork()
    if pid == 0:
        try:
            run(va.ModelRegistry(work), at)
            step()  # a kill after the last step
            os._exit(0)
        except BaseException:
            traceback.print_exc()
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    killed = os.WIFSIGNALED(status)
    code = None if killed else os.WEXITSTATUS(status)
    results.append({"at": at, "work": work, "killed": killed, "code": code})
    if not killed:
        break
print(json.dumps(results))
"""


def _composed(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return va.compose_model("mobilenet_v3_small", "linear", num_outputs=2).eval()


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _equal(model: nn.Module, state: dict[str, torch.Tensor]) -> bool:
    got = model.state_dict()
    return got.keys() == state.keys() and all(torch.equal(got[k], state[k]) for k in state)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``m`` and ``shared`` hold the same weights (seed 1); ``other`` has its own (seed 2)."""
    root = tmp_path_factory.mktemp("pristine") / "registry"
    registry = ModelRegistry(root)
    registry.register("m", "1.0.0", _composed(1))
    registry.register("shared", "1.0.0", _composed(1))
    registry.register("other", "1.0.0", _composed(2))
    return root


def _kill_at_every_step(pristine: Path, work: Path, **spec: object) -> list[dict[str, object]]:
    env = {**os.environ, "VISIONATLAS_DISABLE_PLUGIN_AUTOLOAD": "1"}
    payload = json.dumps({"pristine": str(pristine), "work": str(work), **spec})
    result = subprocess.run(
        [sys.executable, "-c", _DRIVER, payload],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs: list[dict[str, object]] = json.loads(result.stdout.strip().splitlines()[-1])
    assert runs[-1]["code"] == 0, result.stderr[-3000:]  # the unkilled run completes
    assert len(runs) >= 4, runs  # the operation has steps to be killed at
    return runs


def _check(root: Path, expected: dict[str, list[dict[str, torch.Tensor]]]) -> None:
    """Every model loads (checksum verified) with one of its expected states, or is gone
    where an empty list of states is allowed (``[]`` first in the list means "may be absent").
    """
    registry = ModelRegistry(root)
    for name, states in expected.items():
        try:
            model = registry.load(name, "1.0.0")
        except (UnknownModelError, UnknownVersionError):
            assert {} in states, f"{name} vanished from {root}"
            continue
        assert any(state and _equal(model, state) for state in states), f"{name} in {root}"


def _check_all(runs: list[dict[str, object]], expected: dict[str, list[dict]]) -> None:
    for run in runs:
        root = Path(str(run["work"]))
        _check(root, expected)
        ModelRegistry(root).collect_garbage(min_age=0)
        _check(root, expected)
        registry = ModelRegistry(root)
        used = {f"{e.weights_sha256}.safetensors" for e in registry.list()}
        assert {p.name for p in registry.weights_dir.iterdir()} == used, run
        assert not list((root / "tmp").iterdir()), run
        shutil.rmtree(root)


def test_overwrite_killed_at_every_step_keeps_old_or_new(pristine: Path, tmp_path: Path) -> None:
    old, new, other = _state(_composed(1)), _state(_composed(3)), _state(_composed(2))
    runs = _kill_at_every_step(pristine, tmp_path, op="overwrite", name="other", seed=3)
    _check_all(runs, {"other": [other, new], "m": [old], "shared": [old]})


def test_overwrite_of_shared_weights_killed_at_every_step(pristine: Path, tmp_path: Path) -> None:
    old, new, other = _state(_composed(1)), _state(_composed(3)), _state(_composed(2))
    runs = _kill_at_every_step(pristine, tmp_path, op="overwrite", name="m", seed=3)
    _check_all(runs, {"m": [old, new], "shared": [old], "other": [other]})


def test_delete_killed_at_every_step_keeps_the_model_or_removes_it(
    pristine: Path, tmp_path: Path
) -> None:
    same, other = _state(_composed(1)), _state(_composed(2))
    runs = _kill_at_every_step(pristine, tmp_path, op="delete", name="other")
    _check_all(runs, {"other": [{}, other], "m": [same], "shared": [same]})
