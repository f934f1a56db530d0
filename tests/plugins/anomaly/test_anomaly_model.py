"""Fitting, predicting, saving and loading the detector; input and config validation."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from anomaly_helpers import TINY, textures
from pydantic import ValidationError

from visionatlas.errors import PretrainedWeightsError
from visionatlas_anomaly.config import UninformedStudentsConfig
from visionatlas_anomaly.errors import NonFiniteError
from visionatlas_anomaly.inputs import InvalidImagesError
from visionatlas_anomaly.model import NotFittedError, UninformedStudents
from visionatlas_anomaly.training import TeacherFallbackWarning


def test_fit_and_predict_separate_defects(fitted_detector: UninformedStudents) -> None:
    normal = fitted_detector.predict(textures(4, seed=7))
    defective = fitted_detector.predict(textures(4, seed=8, defect=True))
    assert normal.anomaly_maps.shape == (4, 32, 32)
    assert normal.scores.shape == (4,)
    assert defective.scores.min() > normal.scores.max()
    assert defective.is_anomalous.all()
    # The defect is where the map is highest.
    maps = defective.anomaly_maps
    inside = maps[:, 12:20, 12:20].mean()
    outside = maps[:, :8, :8].mean()
    assert inside > outside + 1.0
    assert fitted_detector.teacher_source == "self_supervised"
    report = fitted_detector.fit_report
    assert report is not None
    assert report.validation_images >= 1
    first, last = report.student_losses["p17"][0], report.student_losses["p17"][-1]
    assert last < first


def test_forward_returns_maps(fitted_detector: UninformedStudents) -> None:
    images = textures(2, seed=9)
    with torch.no_grad():
        maps = fitted_detector(images)
    torch.testing.assert_close(maps, fitted_detector.predict(images).anomaly_maps)


@pytest.mark.parametrize("name", ["detector", "detector.safetensors"])
def test_save_and_load_give_same_maps(
    fitted_detector: UninformedStudents, tmp_path: Path, name: str
) -> None:
    path = fitted_detector.save(tmp_path / name)
    if path.is_dir():
        assert {p.name for p in path.iterdir()} == {"model.safetensors", "config.json"}
    loaded = UninformedStudents.load(path)
    images = textures(2, seed=11, defect=True)
    before, after = fitted_detector.predict(images), loaded.predict(images)
    torch.testing.assert_close(after.anomaly_maps, before.anomaly_maps)
    assert after.threshold == before.threshold
    assert loaded.config == fitted_detector.config


def test_the_fit_lives_in_the_state_dict(fitted_detector: UninformedStudents) -> None:
    """What the registry and checkpoints store (weights only) keeps a detector fitted."""
    state = fitted_detector.state_dict()
    assert float(state["fit_threshold"]) == fitted_detector.threshold
    assert state["fit_image_size"].tolist() == [32, 32]
    copy = UninformedStudents(fitted_detector.config)
    assert (copy.fitted, copy.threshold, copy.image_size) == (False, None, None)
    copy.load_state_dict(state)
    assert copy.fitted
    assert (copy.threshold, copy.image_size) == (fitted_detector.threshold, (32, 32))
    images = textures(2, seed=13, defect=True)
    torch.testing.assert_close(
        copy.predict(images).anomaly_maps, fitted_detector.predict(images).anomaly_maps
    )
    copy.threshold = None  # unfitting clears the stored threshold too
    assert not bool(copy.state_dict()["fit_done"])
    bad = {**state, "fit_threshold": torch.tensor(float("nan"), dtype=torch.float64)}
    with pytest.raises(NonFiniteError, match="threshold is nan"):
        UninformedStudents(fitted_detector.config).load_state_dict(bad)
    bad = {**state, "fit_image_size": torch.tensor([0, 32])}
    with pytest.raises(ValueError, match=r"fitted image size is \[0, 32\]"):
        UninformedStudents(fitted_detector.config).load_state_dict(bad)


def test_load_refuses_what_is_not_a_detector(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no saved detector"):
        UninformedStudents.load(tmp_path / "missing")
    (tmp_path / "half").mkdir()
    with pytest.raises(FileNotFoundError, match="missing"):
        UninformedStudents.load(tmp_path / "half")


def test_predict_before_fit() -> None:
    detector = UninformedStudents(UninformedStudentsConfig(**TINY))
    with pytest.raises(NotFittedError, match="not fitted"):
        detector.predict(textures(1))


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.rand(2, 1, 16, 16), "3 \\(RGB\\) channels"),
        (torch.rand(3, 16, 16), "shape \\(N, 3, H, W\\)"),
        (torch.full((1, 3, 16, 16), 2.0), "values in \\[0, 1\\]"),
        (torch.zeros(1, 3, 16, 16, dtype=torch.uint8), "floating point"),
        (torch.full((1, 3, 16, 16), float("nan")), "NaN"),
        (torch.rand(0, 3, 16, 16), "empty"),
        ([[0.5]], "torch.Tensor"),
    ],
)
def test_malformed_images(images: object, message: str) -> None:
    detector = UninformedStudents(UninformedStudentsConfig(**TINY))
    with pytest.raises(InvalidImagesError, match=message):
        detector(images)  # type: ignore[arg-type]
    with pytest.raises(InvalidImagesError, match=message):
        detector.fit(images)  # type: ignore[arg-type]


def test_fit_needs_two_images() -> None:
    detector = UninformedStudents(UninformedStudentsConfig(**TINY))
    with pytest.raises(ValueError, match="at least 2 normal images"):
        detector.fit(textures(1))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"patch_sizes": (31,)}, "unsupported patch sizes"),
        ({"patch_sizes": ()}, "at least one"),
        ({"num_students": 0}, "greater than or equal to 1"),
        ({"backbone": "resnet50"}, "backbone must be 'resnet18'"),
        ({"head": "classification"}, "do not apply"),
        ({"teacher_distillation": "off", "pretrained": True}, "contradicts"),
        ({"colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_config_validation(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        UninformedStudentsConfig.model_validate(options)


def test_fallback_warns_and_required_raises(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VISIONATLAS_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    options = {**TINY, "teacher_distillation": "auto", "teacher_steps": 1, "student_steps": 1}
    with pytest.warns(TeacherFallbackWarning, match="self-supervised"):
        UninformedStudents(UninformedStudentsConfig(**options)).fit(textures(3))
    required = {**options, "teacher_distillation": "required"}
    with pytest.raises(PretrainedWeightsError, match="resnet18"):
        UninformedStudents(UninformedStudentsConfig(**required)).fit(textures(3))


def test_distillation_from_a_local_resnet18_file(tmp_path: Path) -> None:
    from torchvision.models import resnet18

    weights = tmp_path / "resnet18.pth"
    torch.save(resnet18().state_dict(), weights)
    options = {
        **TINY,
        "teacher_distillation": "auto",
        "weights_path": weights,
        "teacher_steps": 3,
        "student_steps": 2,
        "distillation_input_size": 32,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error", TeacherFallbackWarning)
        detector = UninformedStudents(UninformedStudentsConfig(**options)).fit(textures(3))
    assert detector.teacher_source == "resnet18_distillation"
    assert len(detector.fit_report.teacher_losses["p17"]) == 3  # type: ignore[union-attr]


def test_same_seed_same_detector() -> None:
    options = {**TINY, "teacher_steps": 2, "student_steps": 3}
    a = UninformedStudents(UninformedStudentsConfig(**options)).fit(textures(3))
    b = UninformedStudents(UninformedStudentsConfig(**options)).fit(textures(3))
    images = textures(1, seed=5)
    torch.testing.assert_close(a.predict(images).anomaly_maps, b.predict(images).anomaly_maps)


def test_load_refuses_another_format(fitted_detector: UninformedStudents, tmp_path: Path) -> None:
    import json

    path = fitted_detector.save(tmp_path / "old")
    meta_file = path / "config.json"
    metadata = json.loads(meta_file.read_text(encoding="utf-8"))
    metadata["format"] = "visionatlas-anomaly/uninformed-students/1"
    meta_file.write_text(json.dumps(metadata), encoding="utf-8")
    with pytest.raises(ValueError, match=r"students/1.*this version reads.*fit the detector again"):
        UninformedStudents.load(path)
