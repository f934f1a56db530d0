"""Generate the manifest of timm backbones from the installed timm (imports torch and timm).

Every model is built on the meta device (no memory, no initialisation) and its feature
levels are checked with a real ``forward_intermediates`` call on a meta tensor, so the
manifest holds only what the model actually produces. Run it after changing the pinned timm::

    python -m visionatlas_timm.generate --jobs 2
"""

from __future__ import annotations

import argparse
import datetime
import math
import multiprocessing
import sys
import time
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from visionatlas_timm.manifest import FORMAT, MANIFEST_FILE, Entry, write_manifest

__all__ = ["describe_model", "generate", "main"]

MIN_STRIDE = 4
"""Levels finer than this (stride-2 stems) are left out, as for the torchvision backbones."""


def level_name(stride: int) -> str:
    """``feat1`` for stride 4, ``feat2`` for 8, ... (the core's naming); nearest for others."""
    return f"feat{max(1, round(math.log2(stride)) - 1)}"


def choose_levels(feature_info: Sequence[dict[str, Any]]) -> list[tuple[int, int, int]]:
    """``(index, channels, stride)`` of the deepest feature at each stride >= 4, in order."""
    chosen: dict[int, tuple[int, int, int]] = {}
    for index, info in enumerate(feature_info):
        stride = int(info["reduction"])
        if stride >= MIN_STRIDE:
            chosen[stride] = (index, int(info["num_chs"]), stride)
    levels = sorted(chosen.values())
    increasing = [lv for k, lv in enumerate(levels) if all(lv[2] > p[2] for p in levels[:k])]
    names = [level_name(stride) for _, _, stride in increasing]
    if len(set(names)) != len(names):  # e.g. strides 14 and 16: keep the deeper one
        kept: dict[str, tuple[int, int, int]] = {}
        for level, name in zip(increasing, names, strict=True):
            kept[name] = level
        increasing = sorted(kept.values())
    return increasing


def smallest_input(model: Any, levels: Sequence[tuple[int, int, int]], side: int) -> int:
    """The smallest square side (a multiple of 32, or of the largest stride) that runs."""
    import torch

    step = max(32, levels[-1][2])
    for size in range(step, side + 1, step):
        x = torch.empty(2, 3, size, size, device="meta")
        try:
            with torch.no_grad():
                indices = [index for index, _, _ in levels]
                model.forward_intermediates(x, indices=indices, intermediates_only=True)
                model.forward_head(model.forward_features(x), pre_logits=True)
        except Exception:  # too small for some layer: try the next size
            continue
        return size
    return side


def check_size(min_input_size: int, largest_stride: int) -> int:
    """The side ``visionatlas.testing.check_backbone`` runs a backbone at by default."""
    if min_input_size >= 64:
        return min_input_size
    return -(-64 // largest_stride) * largest_stride


def exact_levels(
    model: Any, levels: Sequence[tuple[int, int, int]], height: int, width: int
) -> list[tuple[int, int, int]]:
    """The levels whose maps at ``height x width`` are the input size / stride (rounded
    down or up): layers without padding (Inception, PiT) shrink some maps below that."""
    import torch

    x = torch.empty(2, 3, height, width, device="meta")
    with torch.no_grad():
        maps = model.forward_intermediates(
            x, indices=[index for index, _, _ in levels], intermediates_only=True
        )
    kept = []
    for (index, channels, stride), fmap in zip(levels, maps, strict=True):
        if fmap.ndim != 4 or fmap.shape[1] != channels:
            raise ValueError(
                f"feature {index} is {tuple(fmap.shape)}, not NCHW with {channels} channels"
            )
        sides = ((height, fmap.shape[2]), (width, fmap.shape[3]))
        if all(got in (full // stride, -(-full // stride)) for full, got in sides):
            kept.append((index, channels, stride))
    if not kept:
        raise ValueError(
            f"no feature map at its stride for a {height}x{width} input (unpadded layers)"
        )
    return kept


def describe_model(name: str, family: str, tags: Sequence[str]) -> Entry:
    """Build ``name`` on the meta device and describe it; raise if it yields no features."""
    import timm
    import torch

    with torch.device("meta"):
        model: Any = timm.create_model(name, pretrained=False, num_classes=0).eval()
    feature_info = getattr(model, "feature_info", None)
    if not feature_info or not hasattr(model, "forward_intermediates"):
        raise ValueError("the model has no feature_info or forward_intermediates")
    levels = choose_levels(list(feature_info))
    if not levels:
        raise ValueError("no feature level at stride 4 or more")
    cfg: dict[str, Any] = dict(model.pretrained_cfg or {})
    input_size = cfg.get("input_size") or (3, 224, 224)
    height, width = int(input_size[1]), int(input_size[2])
    side = max(height, width)
    levels = exact_levels(model, levels, height, width)
    x = torch.empty(2, 3, height, width, device="meta")
    with torch.no_grad():
        pre_logits = model.forward_head(model.forward_features(x), pre_logits=True)
    fixed = bool(cfg.get("fixed_input_size", False))
    smallest = side if fixed else smallest_input(model, levels, side)
    check = check_size(smallest, levels[-1][2])
    if (check, check) != (height, width):  # the size the contract kit checks at
        levels = exact_levels(model, levels, check, check)
    if pre_logits.ndim != 2:
        raise ValueError(f"pre-logits are {tuple(pre_logits.shape)}, not (N, D)")
    default_tag = str(cfg.get("tag") or "") if tags else ""
    return Entry(
        name=name,
        family=family,
        num_params=sum(p.numel() for p in model.parameters()),
        pre_logits_dim=int(pre_logits.shape[1]),
        levels=tuple((level_name(s), c, s, i) for i, c, s in levels),
        input_size=side,
        fixed_input_size=fixed,
        min_input_size=smallest,
        tags=tuple(tags),
        default_tag=default_tag,
        license=str(cfg.get("license") or ""),
    )


def _describe(job: tuple[str, str, tuple[str, ...]]) -> tuple[str, Entry | str]:
    name, family, tags = job
    try:
        return name, describe_model(name, family, tags)
    except Exception as err:  # every failure is recorded in the manifest with its reason
        return name, f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"


def _jobs(patterns: Iterable[str]) -> list[tuple[str, str, tuple[str, ...]]]:
    import timm

    family = {m: mod for mod in timm.list_modules() for m in timm.list_models(module=mod)}
    tags: dict[str, list[str]] = {}
    for full in timm.list_pretrained():
        arch, _, tag = full.partition(".")
        tags.setdefault(arch, []).append(tag)
    wanted = list(patterns)
    return [
        (name, family.get(name, ""), tuple(tags.get(name, ())))
        for name in timm.list_models()
        if not wanted or any(fnmatchcase(name, p) for p in wanted)
    ]


def generate(
    out: Path, *, jobs: int = 1, patterns: Iterable[str] = (), progress: bool = True
) -> dict[str, Any]:
    """Describe every timm model (or those matching ``patterns``) and write ``out``."""
    import timm
    import torch

    work = _jobs(patterns)
    entries: list[Entry] = []
    skipped: dict[str, str] = {}
    start = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with context.Pool(max(1, jobs)) as pool:
        for done, (name, result) in enumerate(pool.imap(_describe, work, chunksize=4), 1):
            if isinstance(result, str):
                skipped[name] = result
            else:
                entries.append(result)
            if progress and (done % 50 == 0 or done == len(work)):
                print(
                    f"  {done}/{len(work)} models ({time.perf_counter() - start:.0f} s)",
                    file=sys.stderr,
                )
    manifest = {
        "format": FORMAT,
        "timm_version": timm.__version__,
        "torch_version": torch.__version__.split("+")[0],
        "generated": datetime.date.today().isoformat(),
        "models": entries,
        "skipped": dict(sorted(skipped.items())),
    }
    write_manifest(out, manifest)
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m visionatlas_timm.generate", description=__doc__
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / MANIFEST_FILE)
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--models", nargs="*", default=[], help="only these name patterns")
    args = parser.parse_args(argv)
    manifest = generate(args.out, jobs=args.jobs, patterns=args.models)
    print(
        f"wrote {args.out}: {len(manifest['models'])} backbones, "
        f"{len(manifest['skipped'])} models without features (timm {manifest['timm_version']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
