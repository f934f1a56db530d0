"""What the subcommands share: the program name, exit codes, argument types and output."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "MAX_INPUT_SIZE",
    "PROG",
    "input_size",
    "positive_int",
    "print_json",
    "seconds",
    "usage_error",
]

PROG = "visionatlas"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
MAX_INPUT_SIZE = 4096
"""The largest image side the command line accepts (``--input-size``)."""


def print_json(data: Any, *, allow_nan: bool = True) -> None:
    """``data`` as indented JSON on stdout (``allow_nan=False``: refuse NaN, not JSON)."""
    print(json.dumps(data, indent=2, allow_nan=allow_nan))


def usage_error(message: str) -> int:
    """Print ``PROG: error: message`` on stderr; return the usage exit code."""
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


# -- argument types ----------------------------------------------------------------------------
def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def input_size(text: str) -> tuple[int, int]:
    """``224`` or ``224x160`` (also ``224,160``) as ``(height, width)``."""
    parts = text.lower().replace("x", ",").split(",")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        dims = []
    if len(dims) == 1:
        dims *= 2
    if len(dims) != 2 or not all(1 <= d <= MAX_INPUT_SIZE for d in dims):
        raise argparse.ArgumentTypeError(
            "expected a size such as 224 or HxW such as 224x160, each side from 1 to "
            f"{MAX_INPUT_SIZE}, got {text!r}"
        )
    return dims[0], dims[1]


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value
