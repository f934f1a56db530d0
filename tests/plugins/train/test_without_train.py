"""The core and a task plugin keep working where visionatlas-train is not installed.

A subprocess hides the distribution from both import and entry-point discovery (a meta
path finder refuses ``visionatlas_train`` and ``lightning``; the entry point is blocked by
name), then builds and runs a model, lists the catalog, and uses the classification
plugin's training pieces, which must not need the engine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent(
    """
    import importlib.abc, sys

    class Absent(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("visionatlas_train", "lightning", "pytorch_lightning"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Absent())

    import torch
    import visionatlas as va
    from visionatlas.cli import main

    model = va.create_model("classification", "mobilenet_v3_small", num_classes=3).eval()
    print(tuple(model(torch.rand(1, 3, 64, 64)).shape))
    print(va.get_catalog().list_trainable_tasks())
    training = va.get_catalog().load_training("classification")
    print(type(training).__name__)
    print(main(["list", "--task", "classification"]) == 0)
    print(main(["train", "classification", "resnet18", "builtin:digits"]))
    """
)


def test_the_core_and_a_task_plugin_work_without_the_training_engine() -> None:
    env = {**os.environ, "VISIONATLAS_BLOCKED_PLUGINS": "train"}
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "(1, 3)"
    assert "classification" in lines[1]
    assert lines[2] == "ClassificationTraining"
    assert "True" in lines
    assert lines[-1] == "2"  # `train` is not a command without the engine: a usage error
    assert "invalid choice: 'train'" in done.stderr
