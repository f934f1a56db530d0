"""Every architecture in the installed catalog honours the same contract.

Parameter counts and freezing are checked on the meta device (no memory, no init cost);
forward passes run for real on small inputs.
"""

from __future__ import annotations

import pytest
import torch

import visionatlas as va
from visionatlas.catalog import Catalog

_CATALOG = Catalog()
ARCHITECTURES = [(spec.task, spec.name) for spec in _CATALOG.architectures()]
IDS = [f"{task}/{name}" for task, name in ARCHITECTURES]


def _input_size(task: str, name: str) -> int:
    spec = va.get_architecture(task, name)
    minimum = 32
    if spec.backbone is not None:
        minimum = va.get_backbone(spec.backbone).min_input_size
    return max(64, minimum)


@pytest.mark.parametrize(("task", "name"), ARCHITECTURES, ids=IDS)
def test_parameter_count_metadata_matches_construction(task: str, name: str) -> None:
    spec = va.get_architecture(task, name)
    assert spec.num_params is not None, "built-in architectures declare their size"
    with torch.device("meta"):
        model = va.create_model(task, name)
    assert va.count_parameters(model, trainable_only=False) == spec.num_params


@pytest.mark.parametrize(("task", "name"), ARCHITECTURES, ids=IDS)
def test_freeze_backbone_leaves_exactly_the_head_trainable(task: str, name: str) -> None:
    with torch.device("meta"):
        model = va.create_model(task, name, {"freeze_backbone": True}, num_classes=3)
    head = model.head
    head_ids = {id(p) for p in head.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable
    assert {id(p) for p in trainable} == head_ids
    assert va.count_parameters(model) == va.count_parameters(head)


@pytest.mark.parametrize(("task", "name"), ARCHITECTURES, ids=IDS)
def test_builds_runs_and_reports_its_output_shape(task: str, name: str) -> None:
    torch.manual_seed(0)
    model = va.create_model(task, name, num_classes=3).eval()
    size = _input_size(task, name)
    x = torch.rand(2, 3, size, size)
    predicted = va.infer_output_shape(model, x.shape)
    with torch.inference_mode():
        y = model(x)
    assert tuple(y.shape) == predicted == (2, 3)
    assert torch.isfinite(y).all()
    info = model.visionatlas_info
    assert (info.task, info.architecture, info.num_classes) == (task, name, 3)
    assert info.distribution is not None
    assert info.version is not None
