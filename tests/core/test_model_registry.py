"""The model registry: versions, tags, round trips, integrity and concurrent writers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import platformdirs
import pytest
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

import visionatlas as va
from visionatlas.lifecycle.versioning import ModelRegistry, default_registry_dir, normalize_version
from visionatlas.lifecycle.versioning.semver import sort_versions

IMAGES = (2, 3, 64, 64)


def _images() -> torch.Tensor:
    return torch.rand(*IMAGES, generator=torch.Generator().manual_seed(1))


def _calibrated(model: nn.Module) -> nn.Module:
    """Batch-norm statistics from random images, so that outputs depend on the input.

    With its initial statistics a fresh MobileNetV3 answers the same for every image.
    """
    generator = torch.Generator().manual_seed(3)
    batches = [torch.rand(4, *IMAGES[1:], generator=generator) for _ in range(2)]
    update_bn(batches, model)
    return model.eval()


def _classifier(seed: int = 0, num_classes: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    model = va.create_model("classification", "mobilenet_v3_small", num_classes=num_classes)
    return _calibrated(model)


def _composed(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return va.compose_model("mobilenet_v3_small", "linear", num_outputs=2).eval()


def _same_outputs(a: nn.Module, b: nn.Module) -> bool:
    """Equal weights (parameters and buffers), and equal outputs that vary by image."""
    left, right = a.state_dict(), b.state_dict()
    if left.keys() != right.keys() or not all(torch.equal(left[k], right[k]) for k in left):
        return False
    with torch.no_grad():
        out = a.eval()(_images())
        return torch.equal(out, b.eval()(_images()))


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")


def test_register_and_load_round_trip(registry: ModelRegistry) -> None:
    model = _classifier()
    entry = registry.register(
        "flowers",
        "1.0.0",
        model,
        tags=["prod", "cnn"],
        metrics={"top1": torch.tensor(0.875), "loss": float("nan")},
        description="first release",
    )
    assert entry.ref == "flowers@1.0.0"
    assert (entry.task, entry.architecture, entry.num_classes) == (
        "classification",
        "mobilenet_v3_small",
        3,
    )
    assert entry.tags == ("cnn", "prod")
    assert entry.metrics["top1"] == 0.875
    assert entry.description == "first release"
    assert entry.num_params == va.count_parameters(model, trainable_only=False)
    assert entry.weights_path.parent == registry.weights_dir
    assert entry.weights_path.name == f"{entry.weights_sha256}.safetensors"
    assert entry.versions["visionatlas-classification"] == "0.1.0"
    assert [r.name for r in entry.requires] == [
        "classification/mobilenet_v3_small",
        "mobilenet_v3_small",
    ]
    loaded = registry.load("flowers", "1.0.0")
    assert not loaded.training
    assert loaded.visionatlas_info == model.visionatlas_info
    assert _same_outputs(loaded, model)
    assert registry.index_path.is_file()


def test_fresh_process_loads_equal_outputs(registry: ModelRegistry) -> None:
    torch.manual_seed(0)
    model = _calibrated(va.compose_model("resnet18", "gem", num_outputs=4))
    with torch.no_grad():
        assert float((model(_images())[0] - model(_images())[1]).abs().max()) > 1e-3
    registry.register("composed", "0.1.0", model)
    code = textwrap.dedent(
        f"""
        import json, torch
        from visionatlas import ModelRegistry
        model = ModelRegistry({str(registry.root)!r}).load("composed")
        images = torch.rand(*{IMAGES!r}, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            print(json.dumps(model(images).tolist()))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with torch.no_grad():
        assert torch.equal(torch.tensor(json.loads(result.stdout)), model(_images()))


def test_versions_are_validated_and_latest_follows_semver(registry: ModelRegistry) -> None:
    model = _classifier()
    for bad in ("1.0", "one", "1.0.0.0", "01.2.3", ""):
        with pytest.raises(va.InvalidVersionError, match=r"MAJOR\.MINOR\.PATCH") as info:
            registry.register("m", bad, model)
        assert repr(bad) in str(info.value)
    for version in ("1.0.0-rc.1", "v1.0.0", "0.9.0", "1.0.0-alpha", "1.0.0-rc.10", "1.0.0-rc.2"):
        registry.register("m", version, model)
    assert registry.versions("m") == [
        "0.9.0",
        "1.0.0-alpha",
        "1.0.0-rc.1",
        "1.0.0-rc.2",
        "1.0.0-rc.10",
        "1.0.0",
    ]
    assert registry.get("m").version == "1.0.0"
    assert registry.get("m", "V1.0.0").version == "1.0.0"
    registry.register("m", "1.1.0-beta", model)
    assert registry.get("m", "latest").version == "1.1.0-beta"  # precedence, not date
    assert normalize_version(" v2.0.0+build.5 ") == "2.0.0+build.5"
    assert sort_versions(["10.0.0", "9.0.0", "9.10.0"]) == ["9.0.0", "9.10.0", "10.0.0"]
    with pytest.raises(va.UnknownVersionError, match=r"version '2\.0\.0' of model 'm'"):
        registry.get("m", "2.0.0")
    with pytest.raises(va.UnknownModelError, match=r"unknown registered model 'n'.*Available: m"):
        registry.load("n")
    with pytest.raises(ValueError, match="invalid model name"):
        registry.register("bad name", "1.0.0", model)
    with pytest.raises(ValueError, match="invalid tag"):
        registry.register("m", "3.0.0", model, tags=["no spaces"])


def test_existing_versions_are_kept_unless_overwritten(registry: ModelRegistry) -> None:
    first, second = _classifier(0), _classifier(1)
    old = registry.register("m", "1.0.0", first)
    with pytest.raises(va.VersionExistsError, match=r"already registered.*overwrite=True"):
        registry.register("m", "1.0.0", second)
    assert _same_outputs(registry.load("m", "1.0.0"), first)
    new = registry.register("m", "1.0.0", second, overwrite=True, tags=["fixed"])
    assert new.tags == ("fixed",)
    assert _same_outputs(registry.load("m", "1.0.0"), second)
    assert not old.weights_path.exists()  # the replaced weights were removed
    assert registry.versions("m") == ["1.0.0"]


def test_list_search_tags_and_delete(registry: ModelRegistry) -> None:
    model = _classifier()
    registry.register("flowers", "1.0.0", model, tags=["prod"])
    registry.register("flowers", "1.1.0", model, tags=["dev", "cnn"])
    registry.register("birds", "0.1.0", _classifier(2), tags=["prod", "cnn"])
    assert [e.ref for e in registry.list()] == ["birds@0.1.0", "flowers@1.0.0", "flowers@1.1.0"]
    assert [e.ref for e in registry.list("flowers")] == ["flowers@1.0.0", "flowers@1.1.0"]
    assert [e.ref for e in registry.list(tags="prod")] == ["birds@0.1.0", "flowers@1.0.0"]
    assert [e.ref for e in registry.list(tags=["prod", "cnn"])] == ["birds@0.1.0"]
    assert [e.ref for e in registry.search("low")] == ["flowers@1.0.0", "flowers@1.1.0"]
    assert [e.ref for e in registry.search("b*", tags="cnn")] == ["birds@0.1.0"]
    assert registry.names() == ["birds", "flowers"]
    registry.tag("flowers", "1.1.0", "prod")
    registry.untag("flowers", "1.0.0", "prod")
    assert [e.ref for e in registry.list(tags="prod")] == ["birds@0.1.0", "flowers@1.1.0"]

    shared = registry.get("flowers", "1.0.0").weights_path
    registry.delete("flowers", "1.0.0")  # 1.1.0 has the same weights: the file stays
    assert shared.exists()
    registry.delete("flowers", "1.1.0")
    assert not shared.exists()
    with pytest.raises(va.UnknownModelError):
        registry.get("flowers")
    with pytest.raises(va.UnknownVersionError):
        registry.delete("birds", "9.9.9")
    assert [e.ref for e in registry.list()] == ["birds@0.1.0"]


def test_corrupted_weights_are_detected(registry: ModelRegistry) -> None:
    entry = registry.register("m", "1.0.0", _classifier())
    data = bytearray(entry.weights_path.read_bytes())
    data[-1] ^= 0x01
    entry.weights_path.write_bytes(bytes(data))
    with pytest.raises(va.RegistryError, match=rf"m@1\.0\.0 is corrupt: .*{entry.weights_sha256}"):
        registry.load("m")
    entry.weights_path.write_bytes(bytes(data[:100]))
    with pytest.raises(va.RegistryError, match=r"100 bytes"):
        registry.verify("m")
    entry.weights_path.unlink()
    with pytest.raises(va.RegistryError, match="is missing"):
        registry.load("m")


def test_missing_plugin_names_the_distribution_to_install(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    ModelRegistry(root).register("m", "1.0.0", _classifier())
    without = ModelRegistry(root, catalog=va.Catalog(entry_points=False))
    with pytest.raises(va.MissingPluginError) as info:
        without.load("m")
    message = str(info.value)
    assert "registered model m@1.0.0 needs architecture 'classification/mobilenet_v3_small'" in (
        message
    )
    assert "pip install 'visionatlas-classification==0.1.0'" in message
    blocked = ModelRegistry(root, catalog=va.Catalog(blocked=["classification"]))
    with pytest.raises(va.MissingPluginError, match=r"is installed but blocked"):
        blocked.load("m")


def test_reset_head_is_registered_with_its_new_shape(registry: ModelRegistry) -> None:
    model = _classifier(num_classes=10)
    model.reset_head(4)
    registry.register("m", "2.0.0", model)
    loaded = registry.load("m")
    assert loaded.visionatlas_info.num_classes == 4
    assert _same_outputs(loaded, model)


def test_models_without_build_info_and_the_config_argument(registry: ModelRegistry) -> None:
    with pytest.raises(va.RegistryError, match=r"no visionatlas_info.*config="):
        registry.register("plain", "1.0.0", nn.Linear(2, 2))
    model = _classifier()
    recipe = {"task": "classification", "architecture": "mobilenet_v3_small", "num_classes": 3}
    bare = _classifier()
    object.__delattr__(bare, "visionatlas_info")  # e.g. a model rebuilt by other code
    registry.register("bare", "1.0.0", bare, config=recipe)
    assert _same_outputs(registry.load("bare"), bare)
    registry.register("same", "1.0.0", model, config={"freeze_backbone": False})
    with pytest.raises(va.RegistryError, match="config= differs"):
        registry.register("other", "1.0.0", model, config={"freeze_backbone": True})
    wrong = {**recipe, "num_classes": 5}
    with pytest.raises(va.RegistryError, match=r"would not load back.*head\.fc\.weight"):
        registry.register("wrong", "1.0.0", bare, config=wrong)
    changed = _classifier()
    changed.head.fc = nn.Linear(1024, 8)  # replaced by hand: the build info is stale
    with pytest.raises(va.RegistryError, match="reset_head"):
        registry.register("changed", "1.0.0", changed)


def test_collect_garbage_removes_orphans_and_stale_temporaries(registry: ModelRegistry) -> None:
    entry = registry.register("m", "1.0.0", _classifier())
    orphan = registry.weights_dir / f"{'0' * 64}.safetensors"  # a crash before the commit
    orphan.write_bytes(b"x")
    fresh = registry.root / "tmp" / ".tmp-weights.in-progress"
    fresh.write_bytes(b"y")
    stale = registry.root / "tmp" / ".tmp-weights.crashed"
    stale.write_bytes(b"z")
    os.utime(stale, (0, 0))
    assert registry.collect_garbage() == [orphan, stale]
    assert fresh.exists()
    assert entry.weights_path.exists()
    assert _same_outputs(registry.load("m"), _classifier())


def test_default_directory_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = platformdirs.user_data_path("visionatlas", appauthor=False) / "registry"
    assert default_registry_dir() == expected
    monkeypatch.setenv("VISIONATLAS_REGISTRY", str(tmp_path / "env-registry"))
    assert ModelRegistry().root == tmp_path / "env-registry"
    assert ModelRegistry(tmp_path / "arg").root == tmp_path / "arg"
    assert ModelRegistry().list() == []  # listing an absent registry creates nothing
    assert not (tmp_path / "env-registry").exists()


# -- several processes at once ----------------------------------------------------------------
_WRITER = """
import json, os, sys, time
import torch
import visionatlas as va
from visionatlas import ModelRegistry, VersionExistsError

root, name, version, seed, go = sys.argv[1:6]
torch.manual_seed(int(seed))
model = va.compose_model("mobilenet_v3_small", "linear", num_outputs=2)
print("ready", flush=True)
deadline = time.monotonic() + 240
while not os.path.exists(go) and time.monotonic() < deadline:
    time.sleep(0.005)
try:
    entry = ModelRegistry(root).register(name, version, model)
    print(json.dumps({"won": True, "sha256": entry.weights_sha256}))
except VersionExistsError as err:
    print(json.dumps({"won": False, "error": str(err)}))
"""


def _race(root: Path, jobs: list[tuple[str, str, int]], go: Path) -> list[dict[str, object]]:
    """Start one writer per job, release them together, return what each printed."""
    env = {**os.environ, "VISIONATLAS_DISABLE_PLUGIN_AUTOLOAD": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(root), name, version, str(seed), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name, version, seed in jobs
    ]
    try:
        for proc in procs:  # every writer has imported torch and built its model
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready", proc.stderr
        go.touch()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    root = tmp_path / "registry"  # created by the racing writers themselves
    jobs = [("shared", f"1.{i}.0", 100 + i) for i in range(4)]
    results = _race(root, jobs, tmp_path / "go")
    assert all(r["won"] for r in results), results
    registry = ModelRegistry(root)
    assert registry.versions("shared") == [version for _, version, _ in jobs]
    for (name, version, seed), result in zip(jobs, results, strict=True):
        entry = registry.verify(name, version)
        assert entry.weights_sha256 == result["sha256"]
        assert _same_outputs(registry.load(name, version), _composed(seed))


def test_racing_the_same_version_one_wins(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    results = _race(root, [("race", "1.0.0", 1), ("race", "1.0.0", 2)], tmp_path / "go")
    winners = [i for i, r in enumerate(results) if r["won"]]
    assert len(winners) == 1, results
    loser = results[1 - winners[0]]
    assert "model 'race' version 1.0.0 is already registered" in str(loser["error"])
    registry = ModelRegistry(root)
    assert _same_outputs(registry.load("race", "1.0.0"), _composed(winners[0] + 1))
    # only the winner's weights remain on disk
    assert [p.name for p in registry.weights_dir.iterdir()] == [
        f"{results[winners[0]]['sha256']}.safetensors"
    ]
