"""Regression's training pieces: CSV data, builtin:digits, loss, metrics, refused settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionatlas import Catalog, DataRequest, DatasetError, ImageReadError, LossOptions
from visionatlas.training.images import SkippedImageWarning
from visionatlas_regression import digits
from visionatlas_regression.training import RegressionTraining

SIZE = (8, 8)


def _png(path: Path, value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 6, 3), value, dtype=np.uint8)).save(path)


def _csv(path: Path, header: str, rows: list[str], images: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    for i in range(images):
        _png(path.parent / "img" / f"{i}.png", value=20 * i)
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def _rows(count: int) -> list[str]:
    return [f"img/{i}.png,{i},{i / 10}" for i in range(count)]


def _request(**kwargs: object) -> DataRequest:
    return DataRequest(input_size=SIZE, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def training() -> RegressionTraining:
    return RegressionTraining()


def _error(training: RegressionTraining, source: Path, **kwargs: object) -> str:
    with pytest.raises(DatasetError) as caught:
        training.prepare_data(str(source), _request(**kwargs))
    return str(caught.value)


def test_the_plugin_registers_its_training() -> None:
    loaded = Catalog().load_training("regression")
    assert isinstance(loaded, RegressionTraining)
    assert (loaded.monitor, loaded.monitor_mode) == ("val/mae", "min")
    assert set(loaded.builtin_datasets) == {"digits"}


def test_one_csv_is_split_by_a_seeded_fraction(
    tmp_path: Path, training: RegressionTraining
) -> None:
    source = _csv(tmp_path / "data.csv", "path,age,size", _rows(10), images=10)
    data = training.prepare_data(str(source), _request(val_fraction=0.2, seed=5))
    assert data.labels == ["age", "size"]
    assert data.num_outputs == 2
    assert data.train is not None
    assert data.val is not None
    assert (len(data.train), len(data.val)) == (8, 2)
    again = training.prepare_data(str(source), _request(val_fraction=0.2, seed=5))
    assert again.val.paths == data.val.paths  # type: ignore[union-attr]
    image, target = data.val[0]
    assert image.shape == (3, *SIZE)
    index = int(data.val.paths[0].stem)  # type: ignore[attr-defined]
    assert target == (float(index), index / 10)
    images, targets = training.collate([data.train[0], data.train[1]])
    assert images.shape == (2, 3, *SIZE)
    assert targets.shape == (2, 2)
    assert targets.dtype == torch.float32


def test_a_folder_with_train_and_val_csv(tmp_path: Path, training: RegressionTraining) -> None:
    _csv(tmp_path / "train.csv", "file,y", [f"img/{i}.png,{i}" for i in range(4)], images=4)
    _csv(tmp_path / "val.csv", "file,y", ["img/0.png,0.5", f"{tmp_path / 'img' / '1.png'},1"])
    data = training.prepare_data(str(tmp_path), _request())
    assert (len(data.train), len(data.val)) == (4, 2)  # type: ignore[arg-type]
    assert data.labels == ["y"]
    assert "val.csv" in data.description
    held = training.prepare_data(str(tmp_path), _request(purpose="evaluate", labels=("y",)))
    assert held.train is None
    assert len(held.val) == 2  # type: ignore[arg-type]
    _csv(tmp_path / "test.csv", "file,y", ["img/3.png,3"])
    assert len(training.prepare_data(str(tmp_path), _request(purpose="evaluate")).val) == 1  # type: ignore[arg-type]


def test_labels_pick_and_order_the_target_columns(
    tmp_path: Path, training: RegressionTraining
) -> None:
    source = _csv(
        tmp_path / "data.csv", "path,a,b,c", [f"img/{i}.png,{i},1,2" for i in range(3)], 3
    )
    held = training.prepare_data(str(source), _request(purpose="evaluate", labels=("c", "a")))
    assert held.labels == ["c", "a"]
    assert held.val[0][1] == (2.0, 0.0)  # type: ignore[index]
    message = _error(training, source, purpose="evaluate", labels=("z",))
    assert "has no target column(s) z; its target columns are a, b, c" in message


def test_bad_csv_rows_are_named(tmp_path: Path, training: RegressionTraining) -> None:
    rows = [
        "img/0.png,1.5",
        "img/missing.png,2",
        "img/1.png,abc",
        "img/2.png,nan",
        "img/3.png,4,5",
        ",3",
    ]
    source = _csv(tmp_path / "data.csv", "path,weight", rows, images=4)
    message = _error(training, source)
    assert f"line 3: image file {tmp_path / 'img' / 'missing.png'} does not exist" in message
    assert "line 4, column 'weight': 'abc' is not a finite number" in message
    assert "line 5, column 'weight': 'nan' is not a finite number" in message
    assert "line 6: 3 fields, the header has 2" in message
    assert "line 7: the image path is empty" in message


def test_bad_sources_are_named(tmp_path: Path, training: RegressionTraining) -> None:
    assert "does not exist" in _error(training, tmp_path / "none.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("\n\n")
    assert f"CSV {empty} is empty" in _error(training, empty)
    header_only = _csv(tmp_path / "h.csv", "path,y", [])
    assert "has a header but no rows" in _error(training, header_only)
    one_column = _csv(tmp_path / "one.csv", "path", ["img/0.png"], images=1)
    assert "needs an image path column and at least one target column" in _error(
        training, one_column
    )
    repeated = _csv(tmp_path / "rep.csv", "path,y,y", ["img/0.png,1,2"], images=1)
    assert "repeats the column(s) y" in _error(training, repeated)
    folder = tmp_path / "folder"
    _csv(folder / "data.csv", "path,y", ["img/0.png,1"], images=1)
    assert "holds no train.csv, val.csv or test.csv (it holds data.csv)" in _error(training, folder)
    val_only = tmp_path / "valonly"
    _csv(val_only / "val.csv", "path,y", ["img/0.png,1"], images=1)
    assert "has val.csv but no train.csv" in _error(training, val_only)
    train_only = tmp_path / "trainonly"
    _csv(train_only / "train.csv", "path,y", ["img/0.png,1"], images=1)
    assert "neither test.csv nor val.csv to evaluate on" in _error(
        training, train_only, purpose="evaluate"
    )
    assert "needs at least two" in _error(training, train_only)


def test_unreadable_images_are_skipped_or_refused(
    tmp_path: Path, training: RegressionTraining
) -> None:
    source = _csv(tmp_path / "data.csv", "path,y", _rows_1(5), images=5)
    broken = tmp_path / "img" / "2.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n cut")
    with pytest.warns(SkippedImageWarning, match=r"skipping unreadable image .*2\.png"):
        data = training.prepare_data(str(source), _request(val_fraction=0.25))
    assert [s.path for s in data.skipped] == [broken]
    assert len(data.train) + len(data.val) == 4  # type: ignore[arg-type]
    with pytest.raises(ImageReadError, match=r"cannot read image .*2\.png"):
        training.prepare_data(str(source), _request(strict=True))


def _rows_1(count: int) -> list[str]:
    return [f"img/{i}.png,{i}" for i in range(count)]


def test_builtin_digits(tmp_path: Path, training: RegressionTraining) -> None:
    data = training.prepare_data("builtin:digits", _request(cache_dir=tmp_path))
    folder = tmp_path / "digits-regression"
    manifest = json.loads((folder / "dataset.json").read_text())
    assert manifest["counts"] == {"train": 1438, "val": 359}
    assert data.labels == ["value", "ink"]
    assert (len(data.train), len(data.val)) == (1438, 359)  # type: ignore[arg-type]
    values = [t[0] for t in data.val.targets]  # type: ignore[union-attr]
    assert sorted(set(values)) == [float(d) for d in range(10)]
    assert all(0.0 < t[1] < 1.0 for t in data.val.targets)  # type: ignore[union-attr]
    assert "augment=light" in data.description
    stamp = (folder / "train.csv").stat().st_mtime_ns
    training.prepare_data("builtin:digits", _request(cache_dir=tmp_path))
    assert (folder / "train.csv").stat().st_mtime_ns == stamp
    (folder / "images" / "0000.png").unlink()  # damaged by hand: written again
    assert digits.digits_folder(tmp_path) == folder
    assert (folder / "images" / "0000.png").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits-regression"]


def test_loss_is_mse_and_refuses_classification_settings(training: RegressionTraining) -> None:
    outputs = torch.tensor([[1.0, 2.0], [3.0, 5.0]], requires_grad=True)
    targets = torch.tensor([[1.0, 0.0], [3.0, 3.0]])
    loss = training.loss(outputs, targets, LossOptions())
    assert float(loss.detach()) == pytest.approx((4 + 4) / 4)
    loss.backward()
    with pytest.raises(ValueError, match="label_smoothing applies to classification"):
        training.loss(outputs, targets, LossOptions(label_smoothing=0.1))
    with pytest.raises(ValueError, match=r"outputs of shape \(2, 2\) for targets of shape"):
        training.loss(outputs, targets[:, :1], LossOptions())
    assert training.batch_transform(mixup=0.0, cutmix=0.0, num_outputs=2) is None
    with pytest.raises(ValueError, match=r"regression does not support mixup \(got mixup=0.2\)"):
        training.batch_transform(mixup=0.2, cutmix=0.0, num_outputs=2)
    with pytest.raises(ValueError, match="regression does not support cutmix"):
        training.batch_transform(mixup=0.0, cutmix=1.0, num_outputs=2)


def test_metrics_mae_rmse_r2(training: RegressionTraining, tmp_path: Path) -> None:
    source = _csv(tmp_path / "data.csv", "path,y", _rows_1(4), images=4)
    metrics = training.metrics(training.prepare_data(str(source), _request(val_fraction=0.5)))
    predictions = torch.tensor([[1.0], [2.0], [4.0], [3.0]])
    truth = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    metrics.update(predictions, truth)
    values = metrics.compute()
    assert float(values["mae"]) == pytest.approx(0.5)
    assert float(values["rmse"]) == pytest.approx(np.sqrt(0.5))
    assert float(values["r2"]) == pytest.approx(1 - 2 / 5)  # SS_res 2, SS_tot 5
    two = training.metrics(training.prepare_data(str(source), _request(val_fraction=0.5)))
    predicted = torch.tensor([[1.0, 0.0], [2.0, 1.0], [3.0, 2.0]])
    two.update(predicted, torch.tensor([[1.0, 0.0], [2.0, 1.0], [3.0, 3.0]]))
    r2 = float(two.compute()["r2"])
    assert r2 == pytest.approx((1.0 + (1 - 1 / (14 / 3))) / 2)  # the mean over both targets
