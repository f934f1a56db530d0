"""Anomaly plugin benchmarks: dense extraction speed-up, and the synthetic benchmark.

    uv run python benchmarks/anomaly.py speed             # p = 17, 33, 65 on 256x256
    uv run python benchmarks/anomaly.py speed --check     # exit 1 below 100x or if unequal
    uv run python benchmarks/anomaly.py synthetic         # = visionatlas anomaly benchmark

Dense extraction is timed on a whole 256x256 image; patch-by-patch evaluation is timed on
``--sampled-pixels`` random pixels, ``--patch-batch`` patches per call (default 1: one
patch at a time), and extrapolated to all 65,536 pixels, since running it on every pixel
takes minutes to hours. Equality is checked on the sampled pixels (max |diff| <= 1e-4).
"""

from __future__ import annotations

import argparse
import sys

TARGET_SPEEDUP = 100.0
TOLERANCE = 1e-4


def speed(args: argparse.Namespace) -> int:
    from visionatlas_anomaly.speed import measure_dense_speed

    ok = True
    for patch_size in args.patch_sizes:
        result = measure_dense_speed(
            patch_size,
            image_size=args.image_size,
            sampled_pixels=args.sampled_pixels,
            patch_batch=args.patch_batch,
            width=args.width,
            nnpack=not args.no_nnpack,
        )
        passed = result.speedup >= TARGET_SPEEDUP and result.max_abs_difference <= TOLERANCE
        ok &= passed
        print(f"{result.row()}  target >= {TARGET_SPEEDUP:.0f}x  {'ok' if passed else 'MISSED'}")
    return 0 if ok or not args.check else 1


def synthetic(args: argparse.Namespace) -> int:
    from visionatlas_anomaly.benchmark import run_benchmark

    result = run_benchmark(args.out, preset=args.preset, log=print)
    print(result.table())
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    s = commands.add_parser("speed")
    s.add_argument("--image-size", type=int, default=256)
    s.add_argument("--patch-sizes", type=int, nargs="+", default=[17, 33, 65])
    s.add_argument("--sampled-pixels", type=int, default=1024)
    s.add_argument("--patch-batch", type=int, default=1)
    s.add_argument("--width", type=float, default=1.0)
    s.add_argument("--no-nnpack", action="store_true", help="oneDNN direct convolutions only")
    s.add_argument("--check", action="store_true")
    s.set_defaults(run=speed)
    b = commands.add_parser("synthetic")
    b.add_argument("--out", default="anomaly-benchmark")
    b.add_argument("--preset", default="default")
    b.set_defaults(run=synthetic)
    args = parser.parse_args()
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
