"""``python -m visionatlas``: the same as the ``visionatlas`` command."""

from __future__ import annotations

import sys

from visionatlas.cli import main

if __name__ == "__main__":
    sys.exit(main())
