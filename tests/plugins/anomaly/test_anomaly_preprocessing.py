"""The fitted image size and normalization are saved with a detector and applied when scoring."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from anomaly_helpers import TINY_CROPS, TINY_FLAGS, textures, write_pngs
from safetensors.torch import load_file, save_file

from visionatlas.cli import main
from visionatlas_anomaly.data import image_files, load_images
from visionatlas_anomaly.errors import DetectorFileError, UnknownImageSizeWarning
from visionatlas_anomaly.inputs import ImageSizeError
from visionatlas_anomaly.model import FIT_STATE_KEYS, FORMAT, UninformedStudents
from visionatlas_anomaly.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from visionatlas_anomaly.synthetic import SplitSizes, generate_dataset


@pytest.fixture(scope="module")
def fitted_at_32(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``visionatlas anomaly fit --image-size 32`` on 64x64 weave images: (data, model)."""
    root = tmp_path_factory.mktemp("fit-at-32")
    sizes = SplitSizes(train=8, validation=16, test_good=1, test_per_defect=1)
    data = generate_dataset(root / "data", ["weave"], sizes=sizes, image_size=64) / "weave"
    options = root / "options.json"
    options.write_text(json.dumps(TINY_CROPS), encoding="utf-8")
    model = root / "model"
    argv = ["anomaly", "fit", str(data), "--out", str(model), "--image-size", "32"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main([*argv, *TINY_FLAGS, "--config", str(options)]) == 0
    return data, model


def test_cli_predict_resizes_like_fit(
    fitted_at_32: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 11: fitted at 32 px, the 64 px training images were all scored anomalous."""
    data, model = fitted_at_32
    out = tmp_path / "pred"
    train = data / "train" / "good"
    assert main(["anomaly", "predict", str(model), str(train), "--out", str(out)]) == 0
    summary = json.loads((out / "scores.json").read_text(encoding="utf-8"))
    verdicts = [image["anomalous"] for image in summary["images"]]
    assert len(verdicts) == 8
    assert verdicts.count(False) >= 7, summary
    maps = np.load(out / "anomaly_maps.npz")
    assert all(maps[name].shape == (32, 32) for name in maps.files)
    assert "normal" in capsys.readouterr().out
    # The same images at their own size are far outside what the detector was calibrated on.
    detector = UninformedStudents.load(model)
    native = load_images(image_files(train))
    assert native.shape[-2:] == (64, 64)
    assert detector.predict(native, any_size=True).is_anomalous.all()


def test_saved_detector_records_its_preprocessing(fitted_at_32: tuple[Path, Path]) -> None:
    _, model = fitted_at_32
    metadata = json.loads((model / "config.json").read_text(encoding="utf-8"))
    assert metadata["format"] == FORMAT
    assert metadata["preprocessing"] == {
        "image_size": [32, 32],
        "color_mode": "RGB",
        "resize": "bilinear",
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
    }
    assert UninformedStudents.load(model).image_size == (32, 32)


def test_tensors_of_another_size_are_refused_not_misjudged(
    fitted_detector: UninformedStudents,
) -> None:
    assert fitted_detector.image_size == (32, 32)
    larger = textures(2, size=48, seed=4)
    with pytest.raises(ImageSizeError, match=r"48x48 .* fitted on 32x32 .*any_size=True"):
        fitted_detector.predict(larger)
    with pytest.raises(ImageSizeError):
        fitted_detector(larger)
    resized = fitted_detector.resize(larger)
    assert resized.shape == (2, 3, 32, 32)
    assert fitted_detector.predict(resized).anomaly_maps.shape == (2, 32, 32)
    assert fitted_detector.predict(larger, any_size=True).anomaly_maps.shape == (2, 48, 48)


def test_read_images_applies_the_fitted_size(
    fitted_detector: UninformedStudents, tmp_path: Path
) -> None:
    files = write_pngs(tmp_path, textures(2, size=64, seed=2))
    images = fitted_detector.read_images(files)
    assert images.shape == (2, 3, 32, 32)
    assert fitted_detector.predict(images).scores.shape == (2,)


def test_fit_refuses_validation_images_of_another_size() -> None:
    detector = UninformedStudents()
    with pytest.raises(ImageSizeError, match="validation_images are 16x16"):
        detector.fit(textures(2), textures(1, size=16))


def _rewrite(path: Path, **changes: object) -> None:
    meta = path / "config.json"
    metadata = json.loads(meta.read_text(encoding="utf-8"))
    for key, value in changes.items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    meta.write_text(json.dumps(metadata), encoding="utf-8")


def _as_legacy(path: Path, version: int, **changes: object) -> None:
    """Turn a saved detector into a file of an older format: no ``fit_*`` tensors."""
    tensors = load_file(str(path / "model.safetensors"))
    kept = {k: v for k, v in tensors.items() if k not in FIT_STATE_KEYS}
    assert len(kept) == len(tensors) - 3
    save_file(kept, str(path / "model.safetensors"))
    _rewrite(path, format=f"visionatlas-anomaly/uninformed-students/{version}", **changes)


def test_format_3_detectors_load_their_fit_from_the_metadata(
    fitted_detector: UninformedStudents, tmp_path: Path
) -> None:
    path = fitted_detector.save(tmp_path / "v3")
    _as_legacy(path, 3)
    old = UninformedStudents.load(path)
    assert (old.threshold, old.image_size) == (fitted_detector.threshold, (32, 32))
    images = textures(2, seed=12)
    torch.testing.assert_close(
        old.predict(images).anomaly_maps, fitted_detector.predict(images).anomaly_maps
    )
    assert old.save(tmp_path / "v4") == tmp_path / "v4"  # saved again in today's format
    assert json.loads((tmp_path / "v4" / "config.json").read_text())["format"] == FORMAT


def test_format_4_tensors_and_metadata_must_agree(
    fitted_detector: UninformedStudents, tmp_path: Path
) -> None:
    path = fitted_detector.save(tmp_path / "edited")
    assert fitted_detector.threshold is not None
    _rewrite(path, threshold=fitted_detector.threshold + 1.0)
    with pytest.raises(DetectorFileError, match="inconsistent: its tensors hold threshold"):
        UninformedStudents.load(path)
    path = fitted_detector.save(tmp_path / "stripped")
    _as_legacy(path, 4)  # today's format without its fit tensors
    with pytest.raises(DetectorFileError, match=r"(?s)does not match its config.*fit_done"):
        UninformedStudents.load(path)


def test_format_2_detectors_still_load_and_score_at_their_own_size(
    fitted_detector: UninformedStudents, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = fitted_detector.save(tmp_path / "old")
    _as_legacy(path, 2, preprocessing=None)
    with pytest.warns(UnknownImageSizeWarning, match="does not record the image size"):
        old = UninformedStudents.load(path)
    assert old.image_size is None
    images = textures(2, seed=11)
    torch.testing.assert_close(
        old.predict(images).anomaly_maps, fitted_detector.predict(images).anomaly_maps
    )
    assert old.predict(textures(1, size=40)).anomaly_maps.shape == (1, 40, 40)
    # Through the command line: one warning line, files read at their own size.
    files = write_pngs(tmp_path / "images", images)
    argv = ["anomaly", "predict", str(path), *map(str, files), "--out", str(tmp_path / "p")]
    assert main([*argv, "--no-overlays"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("visionatlas anomaly: warning: ")


@pytest.mark.parametrize(
    ("preprocessing", "message"),
    [
        ({"image_size": [0, 32]}, "image_size.0"),
        ({"image_size": [32, 32], "std": [0.2, 0.0, 0.2]}, "std.1"),
        ({"image_size": [32, 32], "resize": "nearest"}, "resize"),
    ],
)
def test_damaged_preprocessing_is_refused(
    fitted_detector: UninformedStudents, tmp_path: Path, preprocessing: object, message: str
) -> None:
    path = fitted_detector.save(tmp_path / "damaged")
    _rewrite(path, preprocessing=preprocessing)
    with pytest.raises(DetectorFileError, match=f"invalid preprocessing: {message}"):
        UninformedStudents.load(path)
