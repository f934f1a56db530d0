"""Every architecture in the installed catalog honours the same contract.

Parameter counts and freezing are checked on the meta device (no memory, no init cost);
forward passes run for real on small inputs, in eval mode, on each task's example inputs.
What a forward returns depends on the task; ``OUTPUT_CHECKS`` holds one check per task of
the first-party plugins, and any other task must at least return finite tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

import visionatlas as va
from visionatlas.catalog import Catalog
from visionatlas.models.composition import BackboneHeadModel

_CATALOG = Catalog()
# The timm bridge adds ~2,700 architectures over 1,359 backbones: its own tests check the
# backbone contract on a sample of every family (tests/plugins/timm/test_timm_contract.py).
BRIDGED = "timm"
ARCHITECTURES = [
    (spec.task, spec.name)
    for spec in _CATALOG.architectures()
    if spec.provider is None or spec.provider.name != BRIDGED
    if not spec.name.startswith(f"{BRIDGED}/")
]
IDS = [f"{task}/{name}" for task, name in ARCHITECTURES]
BATCH, NUM_CLASSES = 2, 3
# Tasks whose models have no backbone to freeze (the anomaly detector trains its own nets).
NO_FREEZE_TASKS = frozenset({"anomaly_detection"})


def _input_size(task: str, name: str) -> int:
    spec = va.get_architecture(task, name)
    minimum = 32
    if spec.backbone is not None:
        minimum = va.get_backbone(spec.backbone).min_input_size
    return max(64, minimum)


def _tensors(tree: Any) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [t for value in tree.values() for t in _tensors(value)]
    if isinstance(tree, list | tuple):
        return [t for value in tree for t in _tensors(value)]
    return []


def _check_logits(output: Any, size: int) -> None:
    assert isinstance(output, torch.Tensor)
    assert tuple(output.shape) == (BATCH, NUM_CLASSES)


def _check_dense_logits(output: Any, size: int) -> None:
    assert isinstance(output, torch.Tensor)
    assert tuple(output.shape) == (BATCH, NUM_CLASSES, size, size)


def _check_detections(output: Any, size: int) -> None:
    assert isinstance(output, list)
    assert len(output) == BATCH
    for detections in output:
        n = detections["boxes"].shape[0]
        assert tuple(detections["boxes"].shape) == (n, 4)
        assert tuple(detections["labels"].shape) == tuple(detections["scores"].shape) == (n,)
        if "masks" in detections:
            assert tuple(detections["masks"].shape[:2]) == (n, 1)


def _check_rotated_detections(output: Any, size: int) -> None:
    assert isinstance(output, list)
    assert len(output) == BATCH
    for detections in output:
        n = detections["boxes"].shape[0]
        assert tuple(detections["boxes"].shape) == (n, 5)
        assert tuple(detections["polygons"].shape) == (n, 4, 2)
        assert tuple(detections["labels"].shape) == tuple(detections["scores"].shape) == (n,)


def _check_anomaly_maps(output: Any, size: int) -> None:
    assert isinstance(output, torch.Tensor)
    assert tuple(output.shape) == (BATCH, size, size)


OUTPUT_CHECKS: dict[str, Callable[[Any, int], None]] = {
    "classification": _check_logits,
    "regression": _check_logits,
    "segmentation": _check_dense_logits,
    "object_detection": _check_detections,
    "instance_segmentation": _check_detections,
    "oriented_object_detection": _check_rotated_detections,
    "anomaly_detection": _check_anomaly_maps,
}


@pytest.mark.parametrize(("task", "name"), ARCHITECTURES, ids=IDS)
def test_parameter_count_metadata_matches_construction(task: str, name: str) -> None:
    spec = va.get_architecture(task, name)
    assert spec.num_params is not None, "built-in architectures declare their size"
    with torch.device("meta"):
        model = va.create_model(task, name)
    assert va.count_parameters(model, trainable_only=False) == spec.num_params


FREEZABLE = [(t, n) for t, n in ARCHITECTURES if t not in NO_FREEZE_TASKS]


@pytest.mark.parametrize(("task", "name"), FREEZABLE, ids=[f"{t}/{n}" for t, n in FREEZABLE])
def test_freeze_backbone_freezes_exactly_the_backbone(task: str, name: str) -> None:
    with torch.device("meta"):
        model = va.create_model(task, name, {"freeze_backbone": True}, num_classes=NUM_CLASSES)
        unfrozen = va.create_model(task, name, num_classes=NUM_CLASSES)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable, "something must stay trainable"
    if isinstance(model, BackboneHeadModel):
        assert {id(p) for p in trainable} == {id(p) for p in model.head.parameters()}
        return
    # detection and segmentation models list their backbone's stages (not FPN or heads)
    stages = model.backbone_stages()
    assert stages
    assert not any(p.requires_grad for stage in stages for p in stage.parameters())
    assert va.count_parameters(model) < va.count_parameters(unfrozen)


@pytest.mark.parametrize(("task", "name"), ARCHITECTURES, ids=IDS)
def test_builds_runs_and_reports_its_output_shape(task: str, name: str) -> None:
    torch.manual_seed(0)
    # with the value check on: the task's example inputs pass its own input contract
    model = va.create_model(task, name, num_classes=NUM_CLASSES, check_inputs=True).eval()
    size = _input_size(task, name)
    inputs = va.get_catalog().example_inputs(task, batch_size=BATCH, input_size=(size, size))
    with torch.inference_mode():
        output = model(inputs)
    tensors = _tensors(output)
    assert tensors, f"{task}/{name} returned no tensors: {type(output).__name__}"
    assert all(torch.isfinite(t.float()).all() for t in tensors)
    OUTPUT_CHECKS.get(task, lambda output, size: None)(output, size)
    if isinstance(output, torch.Tensor):
        assert va.infer_output_shape(model, inputs) == tuple(output.shape)
    info = model.visionatlas_info
    assert (info.task, info.architecture, info.num_classes) == (task, name, NUM_CLASSES)
    assert info.distribution is not None
    assert info.version is not None


INPUT_KINDS = {
    "classification": "image_batch",
    "regression": "image_batch",
    "segmentation": "image_batch",
    "object_detection": "image_list",
    "instance_segmentation": "image_list",
    "oriented_object_detection": "image_list",
}
"""What the first-party tasks declare; other tasks may declare nothing (no check)."""
DEMOS = [(task, _CATALOG.get_task(task).demo_architecture) for task in _CATALOG.list_tasks()]


@pytest.mark.parametrize(("task", "name"), DEMOS, ids=[task for task, _ in DEMOS])
def test_models_refuse_grey_images_with_the_task_contract(task: str, name: str | None) -> None:
    kind = va.get_task(task).input_kind
    assert kind == INPUT_KINDS.get(task, kind)
    if kind is None or name is None:
        pytest.skip(f"task {task!r} declares no input kind")
    with torch.device("meta"):
        model = va.create_model(task, name, num_classes=NUM_CLASSES)
        grey = torch.rand(BATCH, 1, 64, 64)
    check = va.input_check(model)
    assert check is not None
    assert (check.kind, check.values) == (kind, False)
    with pytest.raises(va.InvalidInputError, match=f"{task}/{name} expects images as"):
        model.eval()(grey if kind == "image_batch" else list(grey))
