"""The timm bridge lists every timm backbone without importing torch or timm."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import visionatlas as va
from visionatlas_timm.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[3]
PLUGIN_SRC = ROOT / "plugins" / "timm" / "src" / "visionatlas_timm"


def test_listing_imports_neither_torch_nor_timm() -> None:
    code = (
        "import json, sys, visionatlas as va\n"
        "from visionatlas.cli import main\n"
        "names = va.list_backbones('timm/*')\n"
        "spec = va.get_architecture('classification', 'timm/resnet50')\n"
        "main(['-q', 'backbones', 'timm/convnext*'])\n"
        "main(['-q', 'list'])\n"
        "print(json.dumps({'n': len(names), 'params': spec.num_params,\n"
        "    'heavy': sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules)}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts["heavy"] == []
    assert facts["n"] > 900
    assert facts["params"] == 25_557_032  # resnet50 with timm's 1000-class linear layer
    assert "timm/convnext_tiny" in result.stdout


def test_patterns_and_pretrained_filter() -> None:
    every = va.list_backbones("timm/*")
    assert every == sorted(every)
    assert all(name.startswith("timm/") for name in every)
    assert "resnet50" in va.list_backbones()  # the built-in torchvision one is still there
    convnext = va.list_backbones("*convnext*", pretrained_only=True)
    assert "timm/convnext_tiny" in convnext
    assert "convnext_tiny" in convnext
    assert all(va.get_backbone(name).pretrained_weights is not None for name in convnext)


def test_manifest_describes_the_installed_timm() -> None:
    manifest = load_manifest()
    assert manifest.timm_version == metadata.version("timm")
    names = [entry.name for entry in manifest.entries]
    assert len(names) == len(set(names))
    for entry in manifest.entries:
        strides = [stride for _, _, stride, _ in entry.levels]
        assert strides == sorted(set(strides)), entry.name
        assert min(entry.num_params, entry.pre_logits_dim) > 0, entry.name
        assert (entry.default_tag in entry.tags) == bool(entry.tags), entry.name
    assert set(manifest.skipped).isdisjoint(names)
    resnet = next(e for e in manifest.entries if e.name == "resnet50")
    assert [(n, c, s) for n, c, s, _ in resnet.levels] == [
        ("feat1", 256, 4), ("feat2", 512, 8), ("feat3", 1024, 16), ("feat4", 2048, 32),
    ]  # fmt: skip


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


def test_the_bridge_uses_only_documented_public_visionatlas_modules() -> None:
    docs = "\n".join(p.read_text("utf-8") for p in (ROOT / "docs").rglob("*.md"))
    used = {
        module
        for path in PLUGIN_SRC.glob("*.py")
        for module in _imported_modules(path)
        if module == "visionatlas" or module.startswith("visionatlas.")
    }
    assert used, "the bridge imports nothing from visionatlas?"
    private = sorted(m for m in used if any(part.startswith("_") for part in m.split(".")))
    assert private == []
    undocumented = sorted(m for m in used if not re.search(rf"\b{re.escape(m)}\b", docs))
    assert undocumented == []


@pytest.mark.parametrize("name", ["timm/resnet50", "timm/vit_small_patch16_224"])
def test_derived_architectures_exist_for_timm_backbones(name: str) -> None:
    backbone = va.get_backbone(name)
    for task in ("classification", "regression"):
        spec = va.get_architecture(task, name)
        assert spec.backbone == name
        assert spec.pretrained_available == (backbone.pretrained_weights is not None)


def test_another_timm_version_gets_its_own_manifest_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from visionatlas_timm import manifest as module

    shipped = load_manifest()
    monkeypatch.setenv("VISIONATLAS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(module, "installed_timm_version", lambda: "9.9.9")
    commands: list[list[str]] = []

    def fake_generate(command: list[str], check: bool) -> subprocess.CompletedProcess[str]:
        commands.append(command)  # stands in for minutes of describing every model
        out = Path(command[command.index("--out") + 1])
        data = json.loads((PLUGIN_SRC / "manifest.json").read_text("utf-8"))
        data["timm_version"] = "9.9.9"
        data["models"] = data["models"][:3]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data), "utf-8")
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(module.subprocess, "run", fake_generate)
    first = module.manifest_for_installed_timm()
    assert first.timm_version == "9.9.9"
    assert [e.name for e in first.entries] == [e.name for e in shipped.entries[:3]]
    assert first.path == str(tmp_path / "timm" / "manifest-timm-9.9.9.json")
    assert "the installed timm is 9.9.9" in capsys.readouterr().err
    assert module.manifest_for_installed_timm().path == first.path  # cached: generated once
    assert len(commands) == 1
    assert commands[0][1:4] == ["-m", "visionatlas_timm.generate", "--out"]


def test_a_failed_regeneration_lists_nothing_rather_than_stale_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from visionatlas_timm import manifest as module

    monkeypatch.setenv("VISIONATLAS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(module, "installed_timm_version", lambda: "9.9.9")
    monkeypatch.setattr(
        module.subprocess, "run", lambda command, check: subprocess.CompletedProcess(command, 1)
    )
    catalog = va.Catalog()
    assert not [name for name in catalog.list_backbones() if name.startswith("timm/")]
    (report,) = [r for r in catalog.list_plugins() if r.name == "timm"]
    assert report.errors[0].kind == "hook-error"
    assert "no timm backbones are listed" in report.errors[0].message
