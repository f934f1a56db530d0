"""Catalog discovery through the entry point, metadata, contract check, cheap listing."""

from __future__ import annotations

import subprocess
import sys

import visionatlas as va
from visionatlas.models.inspection import count_parameters
from visionatlas.testing import check_architecture
from visionatlas_anomaly.model import UninformedStudents

TASK = "anomaly_detection"
ARCH = "uninformed_students_resnet18"


def test_discovered_through_the_entry_point() -> None:
    assert ARCH in va.list_architectures(TASK)
    spec = va.get_architecture(TASK, ARCH)
    assert spec.provider is not None
    assert spec.provider.distribution == "visionatlas-anomaly"
    assert spec.config_class == "visionatlas_anomaly.config:UninformedStudentsConfig"


def test_num_params_equals_construction() -> None:
    spec = va.get_architecture(TASK, ARCH)
    model = va.create_model(TASK, ARCH)
    assert isinstance(model, UninformedStudents)
    assert count_parameters(model, trainable_only=False) == spec.num_params
    assert model.visionatlas_info.architecture == ARCH  # type: ignore[attr-defined]


def test_contract_check_on_example_inputs() -> None:
    result = check_architecture(TASK, ARCH, input_size=(32, 32), batch_size=1)
    assert result.output_shape == (1, 32, 32)


def test_example_inputs_are_capped() -> None:
    batch = va.get_catalog().example_inputs(TASK, batch_size=2, input_size=(224, 224))
    assert batch.shape == (2, 3, 64, 64)


def test_config_through_create_model() -> None:
    model = va.create_model(TASK, ARCH, {"patch_sizes": [33], "num_students": 2, "width": 0.25})
    assert isinstance(model, UninformedStudents)
    assert model.patch_sizes == (33,)
    assert len(model.students["p33"]) == 2


def test_listing_imports_no_torch() -> None:
    code = (
        "import sys, visionatlas as va; va.list_architectures('anomaly_detection'); "
        "print(any(m == 'torch' or m.startswith('torch.') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
