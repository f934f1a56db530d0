"""Forward latency of the segmentation architectures against torchvision's own builders.

    uv run python benchmarks/segmentation.py                       # all six, prints a table
    uv run python benchmarks/segmentation.py lraspp_mobilenet --repeats 31 --json seg.json
    uv run python benchmarks/segmentation.py --check               # exit 1 if a target is missed

Each pair is ``create_model("segmentation", name, {"aux_loss": False})`` and the plain
torchvision builder with the same settings (``num_classes=21``, ``aux_loss=False``) holding
the same weights, in eval mode under ``inference_mode``, timed in turns in one process. The
figure is the median of per-pair time ratios (ours / torchvision); the target is <= 1.02.
The auxiliary head is off on both sides: in eval mode torchvision still runs it when it is
there, while visionatlas models only run it when targets are given.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torchvision
from _timing import Comparison, alternate

import visionatlas as va

TORCHVISION_BUILDERS = {
    "fcn_resnet50": "fcn_resnet50",
    "fcn_resnet101": "fcn_resnet101",
    "deeplabv3_resnet50": "deeplabv3_resnet50",
    "deeplabv3_resnet101": "deeplabv3_resnet101",
    "deeplabv3_mobilenet": "deeplabv3_mobilenet_v3_large",
    "lraspp_mobilenet": "lraspp_mobilenet_v3_large",
}
TARGET = 1.02


def compare(name: str, *, batch: int, size: int, repeats: int, device: str) -> Comparison:
    """Time ``name`` built through visionatlas against torchvision's builder."""
    has_aux = name != "lraspp_mobilenet"
    torch.manual_seed(0)
    ours = va.create_model("segmentation", name, {"aux_loss": False} if has_aux else {})
    builder = getattr(torchvision.models.segmentation, TORCHVISION_BUILDERS[name])
    options = {"weights": None, "weights_backbone": None, "num_classes": 21}
    reference = builder(**options, **({"aux_loss": False} if has_aux else {}))
    reference.load_state_dict(ours.state_dict())  # strict: same keys, same weights
    ours, reference = ours.eval().to(device), reference.eval().to(device)
    images = torch.rand(batch, 3, size, size, device=device)

    def forward(model: torch.nn.Module) -> object:
        with torch.inference_mode():
            out = model(images)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return out

    for _ in range(2):  # warm-up (allocator, cuDNN/oneDNN algorithm choice)
        forward(ours), forward(reference)
    if not torch.equal(forward(ours), forward(reference)["out"]):
        raise RuntimeError(f"{name}: visionatlas and torchvision outputs differ")
    ours_s, ref_s, ratio = alternate(lambda: forward(ours), lambda: forward(reference), repeats)
    return Comparison(
        f"forward {name} {batch}x{size}px {device}",
        ours_s,
        ref_s,
        f"<= {TARGET}",
        ratio,
        ratio <= TARGET,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help=f"subset to run: {', '.join(TORCHVISION_BUILDERS)}")
    parser.add_argument("--repeats", type=int, default=15, help="alternating pairs per model")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, default=224, help="input side in pixels")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    unknown = [name for name in args.only if name not in TORCHVISION_BUILDERS]
    if unknown:
        parser.error(f"unknown architecture(s) {unknown}; choose from {list(TORCHVISION_BUILDERS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for name in args.only or TORCHVISION_BUILDERS:
        result = compare(
            name, batch=args.batch, size=args.size, repeats=args.repeats, device=args.device
        )
        print(result.row(), flush=True)
        results.append(result)
    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"{torch.get_num_threads()} threads, {args.repeats} pairs, median of per-pair ratios"
    )
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=2))
    return 0 if all(r.passed for r in results) or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
