"""The timm bridge against timm itself, alternating in one run.

    uv run python benchmarks/timm_bridge.py              # listing, construction, forward
    uv run python benchmarks/timm_bridge.py --check      # exit 1 when a target is missed
    uv run python benchmarks/timm_bridge.py params       # manifest counts vs construction

Targets: a cold process listing every backbone and architecture at least 15x faster than a
cold ``import timm; timm.list_models()``; ``create_backbone("timm/resnet50")`` against
``timm.create_model("resnet50", features_only=True)`` at most 1.05 for construction and for
the forward pass (batch 8 at 224, CPU, ``inference_mode``).
"""

from __future__ import annotations

import subprocess
import sys
import time

from _timing import Comparison, alternate, run_comparisons

LIST_CODE = (
    "import visionatlas as va; va.list_backbones(); "
    "[va.list_architectures(t) for t in va.list_tasks()]"
)


def cold_listing(repeats: int) -> Comparison:
    ours_cmd = [sys.executable, "-c", LIST_CODE]
    ref_cmd = [sys.executable, "-c", "import timm; timm.list_models()"]

    def run(cmd: list[str]) -> None:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)

    run(ours_cmd), run(ref_cmd)  # warm the OS file cache for both
    ours, ref, _ = alternate(lambda: run(ours_cmd), lambda: run(ref_cmd), repeats)
    speedup = ref / ours
    return Comparison(
        "cold listing (all) vs import timm; list_models()", ours, ref, ">= 15x", speedup,
        speedup >= 15,
    )  # fmt: skip


def create_resnet50(repeats: int) -> Comparison:
    import timm

    import visionatlas as va

    va.create_backbone("timm/resnet50")  # discovery and lazy imports, once
    ours, ref, ratio = alternate(
        lambda: va.create_backbone("timm/resnet50"),
        lambda: timm.create_model("resnet50", features_only=True),
        repeats,
    )
    return Comparison(
        "create_backbone timm/resnet50 vs features_only", ours, ref, "<= 1.05", ratio,
        ratio <= 1.05,
    )  # fmt: skip


def forward_resnet50(repeats: int) -> Comparison:
    import timm
    import torch

    import visionatlas as va

    torch.manual_seed(0)
    ours_model = va.create_backbone("timm/resnet50").eval()
    reference = timm.create_model("resnet50", features_only=True, out_indices=(1, 2, 3, 4))
    reference.load_state_dict(ours_model.model.state_dict(), strict=False)
    reference.eval()
    x = torch.rand(8, 3, 224, 224)
    with torch.inference_mode():
        for mine, theirs in zip(
            ours_model.forward_multiscale(x).values(), reference(x), strict=True
        ):
            torch.testing.assert_close(mine, theirs)

    def ours() -> None:
        with torch.inference_mode():
            ours_model.forward_multiscale(x)

    def ref() -> None:
        with torch.inference_mode():
            reference(x)

    ours(), ref()  # warm-up
    o, r, ratio = alternate(ours, ref, repeats)
    return Comparison(
        "forward_multiscale timm/resnet50, batch 8 @ 224", o, r, "<= 1.05", ratio, ratio <= 1.05
    )


def check_params() -> int:
    """Build every manifest entry through the bridge on the meta device; compare counts."""
    import torch

    import visionatlas as va
    from visionatlas_timm.manifest import manifest_for_installed_timm

    entries = manifest_for_installed_timm().entries
    wrong: list[str] = []
    start = time.perf_counter()
    for k, entry in enumerate(entries, 1):
        with torch.device("meta"):
            backbone = va.create_backbone(f"timm/{entry.name}")
        counted = sum(p.numel() for p in backbone.parameters())
        if counted != entry.num_params:
            wrong.append(f"{entry.name}: manifest {entry.num_params}, built {counted}")
        if k % 100 == 0:
            print(f"  {k}/{len(entries)} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    print(f"{len(entries) - len(wrong)} of {len(entries)} parameter counts equal construction")
    for line in wrong:
        print("  " + line)
    return 1 if wrong else 0


BENCHMARKS = {"list": cold_listing, "create": create_resnet50, "forward": forward_resnet50}


def main() -> int:
    return run_comparisons(BENCHMARKS, __doc__.splitlines()[0], {"params": check_params})


if __name__ == "__main__":
    sys.exit(main())
