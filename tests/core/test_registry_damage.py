"""A registry edited, damaged, locked or read-only: clear errors, and nothing else is touched."""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import visionatlas as va
from visionatlas.cli import main
from visionatlas.lifecycle.versioning import (
    DamagedEntryError,
    ModelRegistry,
    RegistryError,
    RegistryLockedError,
    RegistryWarning,
)


def _composed(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return va.compose_model("mobilenet_v3_small", "linear", num_outputs=2).eval()


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    registry = ModelRegistry(tmp_path / "registry")
    registry.register("good", "1.0.0", _composed(1), metrics={"top1": 0.5})
    registry.register("edited", "1.0.0", _composed(2))
    return registry


def _edit(registry: ModelRegistry, sql: str, *params: object) -> None:
    with sqlite3.connect(registry.index_path) as connection:
        connection.execute(sql, params)


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("visionatlas: error: "), err
    assert "\n" not in err, err
    return err


def test_an_edited_digest_never_reaches_the_file_system(registry: ModelRegistry) -> None:
    victim = registry.root.parent / "x.safetensors"  # where weights/../../x would point
    victim.write_bytes(b"not yours")
    _edit(registry, "UPDATE models SET weights_sha256 = '../../x' WHERE name = 'edited'")
    with pytest.raises(DamagedEntryError, match=r"'edited' version 1\.0\.0.*weights_sha256"):
        registry.load("edited", verify=False)
    with pytest.raises(DamagedEntryError):
        registry.verify("edited")
    registry.delete("edited", "1.0.0")  # removes the row, touches no file outside
    assert victim.read_bytes() == b"not yours"
    assert registry.names() == ["good"]
    registry.collect_garbage(min_age=0)
    assert victim.exists()
    assert len(list(registry.weights_dir.iterdir())) == 1


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("build_info", "{not json"),
        ("build_info", '{"task": "classification"}'),
        ("metrics", "[1, 2]"),
        ("versions", '{"torch": 2}'),
        ("requires", "{}"),
        ("num_params", "many"),
        ("weights_size", -1),
        ("version", "1.0"),
        ("description", b"\x00\xff"),  # a BLOB, not text
    ],
)
def test_a_damaged_row_is_named_and_the_rest_keeps_working(
    registry: ModelRegistry, capsys: pytest.CaptureFixture[str], column: str, value: object
) -> None:
    _edit(registry, f"UPDATE models SET {column} = ? WHERE name = 'edited'", value)
    with pytest.warns(RegistryWarning, match=f"'edited'.*{column}"):
        assert [e.name for e in registry.list()] == ["good"]
    [damage] = registry.problems()
    assert (damage.name, damage.field) == ("edited", column)
    assert va.count_parameters(registry.load("good")) > 0
    # the command line lists the sound entries and names the damaged one
    assert main(["registry", "list", "--registry", str(registry.root)]) == 0
    out, err = capsys.readouterr()
    assert "good" in out
    assert "edited" not in out
    assert err.startswith("visionatlas: warning: registry entry 'edited'")
    assert column in err
    if column != "version":
        assert main(["registry", "show", "edited", "--registry", str(registry.root)]) == 1
        assert column in _one_line_error(capsys)
    # a damaged entry can be deleted (a version edited out of shape cannot be named)
    _edit(registry, "UPDATE models SET version = '1.0.0' WHERE name = 'edited'")
    assert main(["registry", "delete", "edited", "1.0.0", "--registry", str(registry.root)]) == 0
    assert registry.problems() == []
    assert registry.names() == ["good"]


def test_a_bad_tag_row_is_reported(registry: ModelRegistry) -> None:
    _edit(registry, "INSERT INTO tags VALUES ('edited', '1.0.0', '../x')")
    assert registry.problems()[0].field == "tags"
    with pytest.raises(DamagedEntryError, match="tags"):
        registry.get("edited")


def test_latest_never_falls_back_past_a_damaged_version(registry: ModelRegistry) -> None:
    registry.register("edited", "2.0.0", _composed(3))
    _edit(registry, "UPDATE models SET metrics = 'x' WHERE name = 'edited' AND version = '2.0.0'")
    with pytest.raises(DamagedEntryError, match=r"2\.0\.0"):
        registry.get("edited")
    assert registry.get("edited", "1.0.0").version == "1.0.0"


def test_a_stored_string_for_pretrained_is_refused_not_downloaded(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("a stored model tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    info = json.dumps(
        {
            "task": "classification",
            "architecture": "mobilenet_v3_small",
            "num_classes": 3,
            "config": {"pretrained": "true"},
        }
    )
    _edit(
        registry,
        "UPDATE models SET build_info = ?, task = 'classification', "
        "architecture = 'mobilenet_v3_small' WHERE name = 'edited'",
        info,
    )
    with pytest.raises(DamagedEntryError, match=r"pretrained.*'true'"):
        registry.load("edited", verify=False)


def test_a_locked_registry_says_so_in_one_line(
    registry: ModelRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    holder = sqlite3.connect(registry.index_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's long write
    try:
        with pytest.raises(RegistryLockedError, match="locked by another process"):
            ModelRegistry(registry.root, timeout=0.1).delete("good", "1.0.0")
        assert registry.names() == ["edited", "good"]  # reads go on (WAL)
        argv = ["registry", "delete", "good", "1.0.0", "--registry", str(registry.root)]
        assert main([*argv, "--timeout", "0.1"]) == 1
        assert "locked by another process" in _one_line_error(capsys)
        assert main([*argv, "--timeout", "soon"]) == 2
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert registry.names() == ["edited", "good"]


def test_an_index_that_is_not_a_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "registry"
    root.mkdir()
    (root / "index.sqlite3").write_bytes(b"these are not the bytes of a database" * 100)
    with pytest.raises(RegistryError, match="not a visionatlas registry index"):
        ModelRegistry(root).list()
    with pytest.raises(RegistryError, match="not a visionatlas registry index"):
        ModelRegistry(root).register("m", "1.0.0", _composed(1))
    assert main(["registry", "list", "--registry", str(root)]) == 1
    assert "not a visionatlas registry index" in _one_line_error(capsys)


def test_non_finite_metrics_are_valid_json(
    registry: ModelRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    metrics = {"loss": math.nan, "best": math.inf, "worst": -math.inf, "top1": 0.25}
    registry.register("nan", "1.0.0", _composed(4), metrics=metrics)
    assert math.isnan(registry.get("nan").metrics["loss"])  # Python keeps the floats

    def strict(text: str) -> object:
        raise AssertionError(f"{text} is not JSON")

    for argv in (["list", "nan", "--json"], ["show", "nan", "--json"]):
        assert main(["registry", *argv, "--registry", str(registry.root)]) == 0
        data = json.loads(capsys.readouterr().out, parse_constant=strict)
        entry = data[0] if isinstance(data, list) else data
        assert entry["metrics"] == {
            "loss": "NaN",
            "best": "Infinity",
            "worst": "-Infinity",
            "top1": 0.25,
        }


def test_stale_safetensors_temporaries_are_collected(registry: ModelRegistry) -> None:
    temp = registry.root / "tmp"
    stale, fresh = temp / ".tmpAb12Cd", temp / ".tmpEf34Gh"  # safetensors' own names
    stale.write_bytes(b"x" * 1000)
    fresh.write_bytes(b"y")
    os.utime(stale, (0, 0))
    registry.register("another", "1.0.0", _composed(5))  # every registration sweeps
    assert not stale.exists()
    assert fresh.exists()
    stale.write_bytes(b"x")
    os.utime(stale, (0, 0))
    assert registry.collect_garbage() == [stale]
    assert fresh.exists()


def test_stale_safetensors_temporaries_next_to_checkpoints_are_collected(
    tmp_path: Path,
) -> None:
    model = nn.Linear(4, 2)
    path = va.save_checkpoint(model, None, 1, {}, tmp_path / "ckpt")
    stale, fresh = path / ".tmpQw12Er", path / ".tmpTy34Ui"
    stale.write_bytes(b"x" * 1000)
    fresh.write_bytes(b"y")
    os.utime(stale, (0, 0))
    va.save_checkpoint(model, None, 2, {}, path)
    assert not stale.exists()
    assert fresh.exists()
    assert va.load_checkpoint(path, nn.Linear(4, 2)).epoch == 2


def test_weights_moved_aside_by_an_older_writer_are_put_back(registry: ModelRegistry) -> None:
    """visionatlas 0.1 moved a replaced file to tmp/ before committing; a kill there left
    the index naming a file in tmp/. Loading and collecting garbage restore it."""
    entry = registry.get("edited")
    aside = registry.root / "tmp" / f".tmp-trash.{entry.weights_sha256}.0123456789ab"
    os.replace(entry.weights_path, aside)
    os.utime(aside, (0, 0))
    assert va.count_parameters(registry.load("edited")) > 0
    assert entry.weights_path.exists()
    assert not aside.exists()
    os.replace(entry.weights_path, aside)
    registry.collect_garbage(min_age=0)
    assert entry.weights_path.exists()
    registry.verify("edited")


_READ_ONLY = """
import sys
import visionatlas as va
from visionatlas.lifecycle.versioning import ModelRegistry, RegistryError

registry = ModelRegistry(sys.argv[1])
print(registry.names(), va.count_parameters(registry.load("good")) > 0)
try:
    registry.delete("good", "1.0.0")
except RegistryError as err:
    print("refused:", err)
"""


def _can_mount_read_only() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs none /mnt"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_read_only(), reason="needs unshare -m and mount (root)")
def test_a_read_only_registry_can_be_read(registry: ModelRegistry) -> None:
    root = str(registry.root)
    script = textwrap.dedent(
        f"""
        mount --bind {root} {root} && mount -o remount,bind,ro {root} &&
        exec {sys.executable} -c "$0" {root}
        """
    )
    env = {**os.environ, "VISIONATLAS_DISABLE_PLUGIN_AUTOLOAD": "1"}
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, _READ_ONLY],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "['edited', 'good'] True"
    assert lines[1].startswith("refused: cannot write to the registry")
    assert registry.names() == ["edited", "good"]  # nothing changed
