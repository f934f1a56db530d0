"""Ratio benchmarks of visionatlas against the plain torch/torchvision equivalents.

    uv run python benchmarks/run.py            # all three, prints a table
    uv run python benchmarks/run.py --check    # exit 1 if a target is missed

Every figure is a ratio against a reference measured in the same run, alternating.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from _timing import Comparison, alternate, run_comparisons


def cold_list(repeats: int) -> Comparison:
    """A cold ``visionatlas list`` process against a cold torchvision ``list_models()``."""
    script = Path(sys.executable).with_name("visionatlas")
    ours_cmd = [str(script), "list"]
    if not script.exists():
        ours_cmd = [sys.executable, "-m", "visionatlas", "list"]
    ref_cmd = [sys.executable, "-c", "import torchvision; torchvision.models.list_models()"]

    def run(cmd: list[str]) -> None:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)

    run(ours_cmd), run(ref_cmd)  # warm the OS file cache for both
    ours, ref, _ = alternate(lambda: run(ours_cmd), lambda: run(ref_cmd), repeats)
    speedup = ref / ours
    return Comparison(
        "cold `visionatlas list` vs torchvision list_models",
        ours,
        ref,
        ">= 15x",
        speedup,
        speedup >= 15,
    )


def create_resnet50(repeats: int) -> Comparison:
    import torchvision

    import visionatlas as va

    va.create_model("classification", "resnet50")  # discovery and lazy imports, once
    ours, ref, ratio = alternate(
        lambda: va.create_model("classification", "resnet50"),
        lambda: torchvision.models.resnet50(),
        repeats,
    )
    return Comparison(
        "create_model resnet50 vs torchvision.models.resnet50",
        ours,
        ref,
        "<= 1.05",
        ratio,
        ratio <= 1.05,
    )


def forward_resnet50(repeats: int) -> Comparison:
    import torch
    import torchvision

    import visionatlas as va

    torch.manual_seed(0)
    reference = torchvision.models.resnet50().eval()
    ours_model = va.create_model("classification", "resnet50").eval()
    x = torch.rand(8, 3, 224, 224)

    def forward(model: torch.nn.Module) -> None:
        with torch.inference_mode():
            model(x)

    forward(reference), forward(ours_model)  # warm-up
    ours, ref, ratio = alternate(lambda: forward(ours_model), lambda: forward(reference), repeats)
    return Comparison(
        "forward resnet50, batch 8 @ 224 (CPU)", ours, ref, "<= 1.02", ratio, ratio <= 1.02
    )


BENCHMARKS = {"list": cold_list, "create": create_resnet50, "forward": forward_resnet50}


def main() -> int:
    return run_comparisons(BENCHMARKS, __doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
