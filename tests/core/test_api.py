"""The public surface of ``visionatlas`` and the promise that listing stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import visionatlas


def test_all_is_sorted_and_complete() -> None:
    assert visionatlas.__all__ == sorted(visionatlas.__all__)
    public = {name for name in dir(visionatlas) if not name.startswith("_")}
    # every public name is exported, except submodules
    modules = {name for name in public if type(getattr(visionatlas, name)).__name__ == "module"}
    assert public - modules - {"annotations", "importlib", "TYPE_CHECKING", "Any"} <= set(
        visionatlas.__all__
    )
    for name in visionatlas.__all__:
        assert getattr(visionatlas, name) is not None, name


def test_spec_api_names_exist() -> None:
    for name in (
        "create_model",
        "list_architectures",
        "get_architecture",
        "list_tasks",
        "list_backbones",
        "create_backbone",
        "count_parameters",
        "infer_output_shape",
        "summary",
        "ModelConfig",
        "BackboneConfig",
    ):
        assert callable(getattr(visionatlas, name)), name


_PROBE = """
import json, sys
import visionatlas as va
tasks = va.list_tasks()
archs = va.list_architectures()
meta = va.get_architecture("classification", "resnet50").as_dict()
backbones = va.list_backbones("*resnet*")
plugins = [p.as_dict() for p in va.list_plugins()]
print(json.dumps({
    "tasks": tasks, "n_archs": len(archs), "meta": meta, "backbones": backbones,
    "heavy": sorted(m for m in ("torch", "torchvision", "pydantic") if m in sys.modules),
}))
"""


def test_listing_imports_neither_torch_nor_torchvision() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    result = json.loads(out.stdout)
    assert {"classification", "regression"} <= set(result["tasks"])
    assert result["n_archs"] > 50
    assert result["meta"]["num_params"] == 25_557_032
    assert "resnet50" in result["backbones"]
    assert result["heavy"] == []
