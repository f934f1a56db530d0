"""Eval forward latency of the torchvision detectors built by visionatlas vs torchvision's.

    uv run python benchmarks/detection.py                      # every architecture
    uv run python benchmarks/detection.py fcos_resnet50 --repeats 31 --json out.json

For each architecture both models are built with the same settings (min/max size, classes,
R-CNN proposals per image), the torchvision model gets the visionatlas model's weights, the
outputs are checked equal, then the two forwards alternate; the figure is the median of the
per-pair time ratios (visionatlas / torchvision). Target: <= 1.02. In the table, ``p300``
is the number of R-CNN proposals per image.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _timing import Comparison, alternate

TARGET = 1.02

TORCHVISION: dict[str, tuple[str, str]] = {
    "fasterrcnn_resnet50": ("object_detection", "fasterrcnn_resnet50_fpn"),
    "fasterrcnn_resnet50_v2": ("object_detection", "fasterrcnn_resnet50_fpn_v2"),
    "fcos_resnet50": ("object_detection", "fcos_resnet50_fpn"),
    "retinanet_resnet50": ("object_detection", "retinanet_resnet50_fpn"),
    "retinanet_resnet50_v2": ("object_detection", "retinanet_resnet50_fpn_v2"),
    "ssdlite_mobilenet_v3": ("object_detection", "ssdlite320_mobilenet_v3_large"),
    "maskrcnn_resnet50": ("instance_segmentation", "maskrcnn_resnet50_fpn"),
    "maskrcnn_resnet50_v2": ("instance_segmentation", "maskrcnn_resnet50_fpn_v2"),
}


def _same_outputs(ours: list[dict[str, Any]], reference: list[dict[str, Any]]) -> None:
    import torch

    for a, b in zip(ours, reference, strict=True):
        if a.keys() != b.keys():
            raise SystemExit(f"outputs differ in keys: {sorted(a)} vs {sorted(b)}")
        for key in a:
            torch.testing.assert_close(a[key], b[key], msg=lambda m, k=key: f"{k}: {m}")


def compare(
    name: str, *, repeats: int, batch: int, size: tuple[int, int], proposals: int
) -> Comparison:
    import torch
    import torchvision

    import visionatlas as va

    task, builder = TORCHVISION[name]
    height, width = size
    ssd = name.startswith("ssdlite")
    rcnn = "rcnn" in name
    settings: dict[str, Any] = {"min_size": min(size)}
    reference_kwargs: dict[str, Any] = {}
    if not ssd:
        settings["max_size"] = reference_kwargs["max_size"] = max(size)
        reference_kwargs["min_size"] = min(size)
    if rcnn:  # the RoI heads' cost grows with the proposals; the same number on both sides
        settings["proposals_per_image"] = proposals
        for key in ("rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_test"):
            reference_kwargs[key] = proposals
    torch.manual_seed(0)
    ours = va.create_model(task, name, settings).eval()
    reference = torchvision.models.get_model(
        builder, weights=None, weights_backbone=None, **reference_kwargs
    ).eval()
    if ssd:  # the builder fixes 320x320; give it the same fixed size
        reference.transform = ours.transform
    reference.load_state_dict(ours.state_dict())
    images = [torch.rand(3, height, width) for _ in range(batch)]

    def run(model: torch.nn.Module) -> Callable[[], object]:
        def forward() -> object:
            with torch.inference_mode():
                return model(images)

        return forward

    ours_forward, reference_forward = run(ours), run(reference)
    _same_outputs(ours_forward(), reference_forward())  # also the warm-up  # type: ignore[arg-type]
    ours_s, reference_s, ratio = alternate(ours_forward, reference_forward, repeats)
    label = f"{name} eval {batch}x{height}x{width}" + (f" p{proposals}" if rcnn else "")
    return Comparison(label, ours_s, reference_s, f"<= {TARGET}", ratio, ratio <= TARGET)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help=f"subset: {', '.join(TORCHVISION)}")
    parser.add_argument("--repeats", type=int, default=15, help="alternating pairs (15)")
    parser.add_argument("--batch", type=int, default=2, help="images per forward (2)")
    parser.add_argument("--size", type=int, nargs=2, default=(320, 416), metavar=("H", "W"))
    parser.add_argument(
        "--proposals", type=int, default=300, help="R-CNN proposals per image, both sides (300)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: steadier on shared machines)"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    unknown = [name for name in args.only if name not in TORCHVISION]
    if unknown:
        parser.error(f"unknown architecture(s) {unknown}; choose from {list(TORCHVISION)}")
    import torch

    torch.set_num_threads(args.threads)
    results = []
    for name in args.only or TORCHVISION:
        result = compare(
            name,
            repeats=args.repeats,
            batch=args.batch,
            size=tuple(args.size),
            proposals=args.proposals,
        )
        print(result.row(), flush=True)
        results.append(result)
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=2))
    return 0 if all(r.passed for r in results) or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
