"""Train the toy task from the command line: ``python ddp_toy_run.py OUT DEVICES BATCH``.

A script file (not ``python -c``) because Lightning's DDP launcher starts the other
processes by running this same script again (with ``LOCAL_RANK`` set).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch
import train_toy

from visionatlas import Catalog, use_catalog
from visionatlas_train import train

torch.set_num_threads(1)
out, devices, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
settings = {
    "epochs": 2,
    "num_workers": 0,
    "batch_size": batch,
    "accelerator": "cpu",
    "devices": devices,
    "strategy": "ddp" if devices > 1 else "auto",
    "learning_rate": 0.01,
}
with use_catalog(Catalog(plugins=[train_toy])):
    result = train("toyclass", "tiny_gn", "builtin:blobs#32", settings, out=out)
rank = os.environ.get("LOCAL_RANK", "0")
print(json.dumps({"rank": rank, "epochs": result.epochs_completed, "metrics": result.metrics}))
