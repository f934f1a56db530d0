"""Builds that load weights, without random initialisation, against the ordinary path.

    uv run python benchmarks/fast_loading.py                 # every comparison below
    uv run python benchmarks/fast_loading.py resnet50 registry --repeats 9
    uv run python benchmarks/fast_loading.py catalog         # the classification catalog
    uv run python benchmarks/fast_loading.py --check         # exit 1 when a target is missed

Targets: ``create_model(..., pretrained=True)`` from a weights file at least 3x faster than
torchvision's builder plus ``load_state_dict`` for resnet50 and fasterrcnn_resnet50, and at
least 2x at the median over the torchvision classification architectures of the catalog;
``ModelRegistry.load`` of a registered resnet50 at least 3x faster than the ordinary path
(build, initialise, then load: the code path before deferred initialisation, still taken
under ``eager_loading()``); the peak memory of a pretrained resnet50 build (a fresh process
each) no higher than the ordinary path's.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _timing import Comparison, alternate, run_comparisons

WORK = Path(tempfile.mkdtemp(prefix="visionatlas-fastload-"))


def _weights(name: str, build: Callable[[], Any]) -> Path:
    """A weights file of ``build()``'s state dict, written once per run."""
    import torch

    path = WORK / f"{name}.pth"
    if not path.exists():
        torch.save(build().state_dict(), path)
    return path


def _speedup(name: str, ours: Callable[[], object], ref: Callable[[], object], repeats: int,
             target: float) -> Comparison:  # fmt: skip
    ours(), ref()  # imports, discovery and the OS file cache, once
    ours_s, ref_s, ratio = alternate(ours, ref, repeats)
    return Comparison(name, ours_s, ref_s, f">= {target:g}x", 1 / ratio, 1 / ratio >= target)


def _against(
    task: str, name: str, reference_model: Callable[[], Any], repeats: int, target: float
) -> Comparison:
    """``create_model(task, name)`` from a weights file vs ``reference_model()`` + load."""
    import torch

    import visionatlas as va

    path = _weights(name, reference_model)
    config = {"pretrained": True, "weights_path": str(path)}

    def reference() -> None:
        reference_model().load_state_dict(torch.load(path, weights_only=True))

    return _speedup(
        f"create_model {name} vs torchvision + load",
        lambda: va.create_model(task, name, config),
        reference,
        repeats,
        target,
    )


def resnet50(repeats: int) -> Comparison:
    import torchvision

    return _against("classification", "resnet50", torchvision.models.resnet50, repeats, 3)


def fasterrcnn(repeats: int) -> Comparison:
    from torchvision.models import resnet50
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.misc import FrozenBatchNorm2d

    def torchvision_builder() -> Any:  # torchvision's builder when it is given COCO weights
        trunk = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
        return FasterRCNN(_resnet_fpn_extractor(trunk, 3), num_classes=91)

    return _against("object_detection", "fasterrcnn_resnet50", torchvision_builder, repeats, 3)


def registry(repeats: int) -> Comparison:
    import visionatlas as va
    from visionatlas.models.deferred_init import eager_loading

    store = va.ModelRegistry(WORK / "registry")
    if not store.list():
        store.register("r50", "1.0.0", va.create_model("classification", "resnet50"))

    def ordinary() -> None:
        with eager_loading():
            store.load("r50")

    return _speedup(
        "ModelRegistry.load resnet50 vs ordinary path", lambda: store.load("r50"), ordinary,
        repeats, 3,
    )  # fmt: skip


def catalog(repeats: int) -> Comparison:
    """Every classification architecture on a torchvision backbone, vs its torchvision builder."""
    import torchvision

    import visionatlas as va

    speedups: list[float] = []
    ours_all: list[float] = []
    ref_all: list[float] = []
    for name in va.list_architectures("classification"):
        backbone = va.get_architecture("classification", name).backbone
        if backbone is None or "/" in backbone:
            continue
        builder = getattr(torchvision.models, backbone)
        result = _against("classification", name, builder, min(repeats, 3), 2)
        print(result.row(), flush=True)
        speedups.append(result.ratio)
        ours_all.append(result.ours_s)
        ref_all.append(result.reference_s)
        (WORK / f"{name}.pth").unlink()
    median = statistics.median(speedups)
    return Comparison(
        f"classification catalog median ({len(speedups)} archs)", statistics.median(ours_all),
        statistics.median(ref_all), ">= 2x", median, median >= 2,
    )  # fmt: skip


PEAK_CODE = """
import sys, visionatlas as va
va.get_architecture("classification", "resnet50")  # imports and discovery before the reset
import torch, torchvision, visionatlas_classification.model
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])
before = status("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")  # resets the peak (VmHWM) to the current RSS
config = {"pretrained": True, "weights_path": sys.argv[1]}
model = va.create_model("classification", "resnet50", config)
print(status("VmHWM:") - before)
"""


def memory(repeats: int) -> Comparison:
    """Peak RSS growth (MiB) while a fresh process builds a pretrained resnet50 (Linux)."""
    import torchvision

    path = _weights("resnet50", torchvision.models.resnet50)

    def peak(eager: bool) -> float:
        env = {**os.environ, "VISIONATLAS_EAGER_INIT": "1" if eager else "0"}
        out = subprocess.run(
            [sys.executable, "-c", PEAK_CODE, str(path)],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        return int(out.stdout.split()[-1]) / 1024

    fast = statistics.median(peak(False) for _ in range(max(1, repeats // 3)))
    ordinary = statistics.median(peak(True) for _ in range(max(1, repeats // 3)))
    ratio = fast / ordinary
    return Comparison(
        f"build's peak RSS growth MiB fast {fast:.0f} vs ordinary {ordinary:.0f}", fast / 1e3,
        ordinary / 1e3, "<= 1.0", ratio, ratio <= 1.0,
    )  # fmt: skip


BENCHMARKS = {
    "resnet50": resnet50,
    "fasterrcnn": fasterrcnn,
    "registry": registry,
    "memory": memory,
    "catalog": catalog,
}

if __name__ == "__main__":
    sys.exit(run_comparisons(BENCHMARKS, __doc__ or ""))
