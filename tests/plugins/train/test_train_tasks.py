"""A short real run of each installed task on tiny data written by the test: the loss
falls, the task's metrics are computed, the files are written; bad files are named."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from visionatlas_train import evaluate, train

QUICK = {"epochs": 3, "input_size": 32, "batch_size": 6, "num_workers": 0, "augment": "none"}
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def _square(path: Path, colour: tuple[int, int, int], shade: int) -> None:
    """A 16x16 image of ``colour``, a little lighter or darker by ``shade``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixel = tuple(max(0, min(255, c + shade)) for c in colour)
    Image.new("RGB", (16, 16), pixel).save(path)


def _rows(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((run / "metrics.csv").read_text())))


@pytest.fixture
def class_folders(tmp_path: Path) -> Path:
    root = tmp_path / "colours"
    for split, count in (("train", 8), ("val", 3)):
        for name, colour in COLOURS.items():
            for i in range(count):
                _square(root / split / name / f"{i}.png", colour, 8 * i - 24)
    return root


def test_classification_on_class_folders(class_folders: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = train("classification", "resnet18", class_folders, QUICK, out=run, verbose=False)
    rows = _rows(run)
    assert float(rows[-1]["train/loss"]) < float(rows[0]["train/loss"])
    assert {"val/acc1", "val/f1", "val/loss"} <= set(rows[0])
    assert "val/acc5" not in rows[0]  # top-5 of 3 classes means nothing
    assert result.labels == ["blue", "green", "red"]
    assert (run / "val_confmat.csv").read_text().startswith(",blue,green,red")
    report = evaluate(run, class_folders)
    assert report.num_images == 9
    assert report.metrics["acc1"] == pytest.approx(result.metrics["val/acc1"])
    other = tmp_path / "other"
    for name, colour in {**COLOURS, "yellow": (230, 220, 30)}.items():
        _square(other / "val" / name / "0.png", colour, 0)
    with pytest.raises(ValueError, match=r"yellow"):
        evaluate(run, other)  # a class the model was not trained on


def test_classification_names_a_broken_image(class_folders: Path, tmp_path: Path) -> None:
    broken = class_folders / "train" / "red" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.warns(UserWarning, match=r"broken\.png"):
        result = train("classification", "resnet18", class_folders, {**QUICK, "epochs": 1},
                       out=tmp_path / "skip", verbose=False)  # fmt: skip
    assert [s.path.name for s in result.skipped] == ["broken.png"]
    summary = json.loads((tmp_path / "skip" / "summary.json").read_text())
    assert summary["skipped"][0]["path"].endswith("broken.png")
    with pytest.raises(ValueError, match=r"broken\.png"):
        train("classification", "resnet18", class_folders, {**QUICK, "strict": True},
              out=tmp_path / "strict", verbose=False)  # fmt: skip


def test_regression_on_a_csv(tmp_path: Path) -> None:
    root = tmp_path / "shades"
    lines = ["path,brightness"]
    for i in range(24):
        level = 10 * i
        _square(root / "images" / f"{i}.png", (level, level, level), 0)
        lines.append(f"images/{i}.png,{level / 255:.4f}")
    (root / "shades.csv").write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    result = train("regression", "resnet18", root / "shades.csv", QUICK, out=run, verbose=False)
    rows = _rows(run)
    assert float(rows[-1]["train/loss"]) < float(rows[0]["train/loss"])
    assert {"val/mae", "val/rmse", "val/r2"} <= set(rows[0])
    assert result.summary["best"]["monitor"] == "val/mae"
    assert json.loads((run / "labels.json").read_text())["labels"] == ["brightness"]
    (root / "bad.csv").write_text("path,brightness\nimages/0.png,bright\n")
    with pytest.raises(ValueError, match=r"bright"):
        train("regression", "resnet18", root / "bad.csv", QUICK, out=tmp_path / "bad")
    with pytest.raises(ValueError, match=r"mixup"):
        train("regression", "resnet18", root / "shades.csv", {**QUICK, "mixup": 0.2},
              out=tmp_path / "mix")  # fmt: skip
    assert not (tmp_path / "mix").exists()  # refused before the run folder was written
