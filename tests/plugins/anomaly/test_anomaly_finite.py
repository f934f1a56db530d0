"""No NaN can slip through: settings, losses, calibration, the saved threshold and scores."""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from anomaly_helpers import TINY, textures, write_pngs
from pydantic import ValidationError
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from visionatlas.cli import main
from visionatlas.errors import VisionAtlasError
from visionatlas_anomaly.config import UninformedStudentsConfig
from visionatlas_anomaly.errors import DetectorFileError, FitDivergedError, NonFiniteError
from visionatlas_anomaly.model import UninformedStudents


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"teacher_lr": math.inf}, "finite number"),
        ({"student_lr": math.nan}, "finite number"),
        ({"student_lr": 1e30}, "less than or equal to 1"),
        ({"teacher_lr": 2.0}, "less than or equal to 1"),
        ({"triplet_weight": -math.inf}, "finite number"),
        ({"weight_decay": 5.0}, "less than or equal to 1"),
        ({"progress": "true"}, "valid boolean"),
        ({"progress": 1}, "valid boolean"),
        ({"width": "0.3"}, "valid number"),
        ({"num_students": "2"}, "valid integer"),
        ({"num_students": 2.0}, "valid integer"),
        ({"seed": True}, "valid integer"),
        ({"patch_sizes": ["17"]}, "valid integer"),
    ],
)
def test_config_rejects_non_finite_and_coerced_values(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        UninformedStudentsConfig.model_validate(options)


def test_config_still_takes_ints_for_floats_and_lists_for_tuples() -> None:
    config = UninformedStudentsConfig.model_validate({"width": 1, "patch_sizes": [33, 17]})
    assert config.width == 1.0
    assert config.patch_sizes == (17, 33)
    again = UninformedStudentsConfig.model_validate(json.loads(config.model_dump_json()))
    assert again == config


@pytest.mark.parametrize(
    "option",
    ['{"teacher_lr": Infinity}', '{"student_lr": 1e30}', '{"progress": "true"}'],
)
def test_cli_rejects_bad_settings_in_one_line(
    option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "options.json"
    config.write_text(option, encoding="utf-8")
    write_pngs(tmp_path / "images", textures(2, seed=0))
    argv = ["anomaly", "fit", str(tmp_path / "images"), "--out", str(tmp_path / "m")]
    assert main([*argv, "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("visionatlas anomaly: error: invalid detector options: ")
    assert err.count("\n") == 1
    assert not (tmp_path / "m").exists()


def _bypassing_validation(**changes: Any) -> UninformedStudentsConfig:
    """TINY settings with ``changes`` that validation would refuse (``model_copy`` skips it)."""
    return UninformedStudentsConfig(**TINY).model_copy(update=changes)


@pytest.mark.parametrize(
    ("config", "stage"),
    [
        (_bypassing_validation(teacher_lr=math.inf), "self-supervised teacher training for"),
        (_bypassing_validation(teacher_lr=math.inf, teacher_steps=1), "teacher training for"),
        (UninformedStudentsConfig(**{**TINY, "triplet_weight": 1e39}), "teacher training for"),
        (_bypassing_validation(student_lr=1e30), "student training for patch size 17"),
        (_bypassing_validation(student_lr=1e30, student_steps=1), "calibration"),
    ],
    ids=["teacher-lr-inf", "teacher-last-step", "huge-loss-weight", "student-lr", "calibration"],
)
def test_a_diverging_fit_stops_naming_the_stage(
    config: UninformedStudentsConfig, stage: str
) -> None:
    """Issue 11: ``teacher_lr=inf`` fitted "successfully" with a NaN threshold."""
    detector = UninformedStudents(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(FitDivergedError, match=re.escape(stage)) as caught:
            detector.fit(textures(4, seed=1))
    assert isinstance(caught.value, VisionAtlasError)
    assert str(caught.value).startswith(f"fit stopped in {caught.value.stage}: ")
    assert stage in caught.value.stage
    assert not detector.fitted
    assert detector.threshold is None


def test_the_threshold_cannot_be_made_non_finite(fitted_detector: UninformedStudents) -> None:
    before = fitted_detector.threshold
    for bad in (math.nan, math.inf):
        with pytest.raises(NonFiniteError, match="finite number"):
            fitted_detector.threshold = bad
    with pytest.raises(TypeError, match="finite number or None"):
        fitted_detector.threshold = "0.5"  # type: ignore[assignment]
    assert fitted_detector.threshold == before


@pytest.mark.parametrize("threshold", [math.nan, math.inf, "7"])
def test_a_saved_bad_threshold_is_refused_at_load_and_predict(
    fitted_detector: UninformedStudents,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    threshold: object,
) -> None:
    path = fitted_detector.save(tmp_path / "model")
    meta = path / "config.json"
    metadata = json.loads(meta.read_text(encoding="utf-8"))
    metadata["threshold"] = threshold
    meta.write_text(json.dumps(metadata), encoding="utf-8")  # NaN and Infinity, as json writes
    with pytest.raises(DetectorFileError, match="threshold must be a finite number"):
        UninformedStudents.load(path)
    files = write_pngs(tmp_path / "images", textures(1, seed=3))
    argv = ["anomaly", "predict", str(path), str(files[0]), "--out", str(tmp_path / "out")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("visionatlas anomaly: error: ")
    assert "threshold" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "out" / "scores.json").exists()


def test_non_finite_weights_are_neither_saved_nor_scored(
    fitted_detector: UninformedStudents, tmp_path: Path
) -> None:
    detector = UninformedStudents(fitted_detector.config)
    detector.load_state_dict(fitted_detector.state_dict())
    detector.threshold = fitted_detector.threshold
    detector.preprocessing = fitted_detector.preprocessing
    with torch.no_grad():
        next(iter(detector.students.parameters())).fill_(math.nan)
    with pytest.raises(NonFiniteError, match="hold NaN or infinite values"):
        detector.predict(textures(2, seed=5))
    with pytest.raises(NonFiniteError, match="refusing to save"):
        detector.save(tmp_path / "nan")
    # A file edited to hold NaN is refused when loaded.
    path = fitted_detector.save(tmp_path / "model.safetensors")
    original = load_file(str(path))
    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata()
    weight = next(k for k in original if k.startswith("students."))
    for name in (weight, "fit_threshold"):  # a weight, and the stored threshold
        tensors = {**original, name: torch.full_like(original[name], math.nan)}
        save_file(tensors, str(path), metadata=header)
        with pytest.raises(DetectorFileError, match=f"NaN or infinite values in .*{name}"):
            UninformedStudents.load(path)
