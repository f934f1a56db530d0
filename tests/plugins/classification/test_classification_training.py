"""Classification's training pieces: ImageFolder data, builtin:digits, loss, mixup, metrics."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionatlas import Catalog, DataRequest, DatasetError, ImageReadError, LossOptions
from visionatlas.training.images import SkippedImageWarning
from visionatlas_classification import digits
from visionatlas_classification.metrics import classification_metrics
from visionatlas_classification.training import ClassificationTraining

SIZE = (8, 8)


def _png(path: Path, value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 6, 3), value, dtype=np.uint8)).save(path)


def _classes(root: Path, counts: dict[str, int]) -> Path:
    for name, count in counts.items():
        for i in range(count):
            _png(root / name / f"{i}.png", value=10 * i)
    return root


def _request(**kwargs: object) -> DataRequest:
    return DataRequest(input_size=SIZE, **kwargs)  # type: ignore[arg-type]


def _targets(dataset: object) -> list[int]:
    return list(dataset.targets)  # type: ignore[attr-defined]


@pytest.fixture
def training() -> ClassificationTraining:
    return ClassificationTraining()


@pytest.fixture(scope="module")
def digits_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    digits.digits_folder(cache)
    return cache


def test_the_plugin_registers_its_training() -> None:
    catalog = Catalog()
    assert "classification" in catalog.list_trainable_tasks()
    loaded = catalog.load_training("classification")
    assert isinstance(loaded, ClassificationTraining)
    assert (loaded.monitor, loaded.monitor_mode) == ("val/acc1", "max")
    assert set(loaded.builtin_datasets) == {"digits"}


def test_train_and_val_folders(tmp_path: Path, training: ClassificationTraining) -> None:
    _classes(tmp_path / "train", {"cat": 3, "dog": 2, "ant": 2})
    _classes(tmp_path / "val", {"cat": 1, "dog": 1, "ant": 1})
    data = training.prepare_data(str(tmp_path), _request())
    assert data.labels == ["ant", "cat", "dog"]
    assert data.num_outputs == 3
    assert data.train is not None
    assert data.val is not None
    assert (len(data.train), len(data.val)) == (7, 3)
    assert _targets(data.train) == [0, 0, 1, 1, 1, 2, 2]
    assert "val/ folder" in data.description
    assert data.skipped == []
    images, labels = training.collate([data.train[0], data.train[6]])
    assert images.shape == (2, 3, *SIZE)
    assert images.dtype == torch.float32
    assert labels.tolist() == [0, 2]
    assert labels.dtype == torch.long


def test_one_folder_is_split_by_a_seeded_stratified_fraction(
    tmp_path: Path, training: ClassificationTraining
) -> None:
    _classes(tmp_path, {"a": 10, "b": 5})
    first = training.prepare_data(str(tmp_path), _request(val_fraction=0.2, seed=1))
    again = training.prepare_data(str(tmp_path), _request(val_fraction=0.2, seed=1))
    other = training.prepare_data(str(tmp_path), _request(val_fraction=0.2, seed=2))
    assert first.val is not None
    assert again.val is not None
    assert other.val is not None
    assert _targets(first.val) == [0, 0, 1]
    assert first.val.paths == again.val.paths  # type: ignore[attr-defined]
    assert first.val.paths != other.val.paths  # type: ignore[attr-defined]
    train_paths = set(first.train.paths)  # type: ignore[union-attr]
    assert not train_paths & set(first.val.paths)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="val_fraction must be between 0 and 1"):
        training.prepare_data(str(tmp_path), _request(val_fraction=0.0))


def test_train_folder_without_val_is_split(
    tmp_path: Path, training: ClassificationTraining
) -> None:
    _classes(tmp_path / "train", {"a": 4, "b": 4})
    data = training.prepare_data(str(tmp_path), _request(val_fraction=0.25))
    assert (len(data.train), len(data.val)) == (6, 2)  # type: ignore[arg-type]


def test_evaluate_reads_test_then_val_then_the_whole_folder(
    tmp_path: Path, training: ClassificationTraining
) -> None:
    _classes(tmp_path / "train", {"a": 2, "b": 2, "c": 2})
    _classes(tmp_path / "val", {"a": 1, "b": 1, "c": 1})
    _classes(tmp_path / "test", {"c": 2})  # a test split missing classes
    held = training.prepare_data(str(tmp_path), _request(purpose="evaluate"))
    assert held.train is None
    assert held.labels == ["c"]
    # with the model's labels the indices are the model's
    mapped = training.prepare_data(
        str(tmp_path), _request(purpose="evaluate", labels=("a", "b", "c"))
    )
    assert mapped.num_outputs == 3
    assert _targets(mapped.val) == [2, 2]
    with pytest.raises(DatasetError, match=r"test has class folders the model does not know: c"):
        training.prepare_data(str(tmp_path), _request(purpose="evaluate", labels=("a", "b")))
    (tmp_path / "test" / "c" / "0.png").unlink()
    (tmp_path / "test" / "c" / "1.png").unlink()
    (tmp_path / "test" / "c").rmdir()
    (tmp_path / "test").rmdir()
    assert len(training.prepare_data(str(tmp_path), _request(purpose="evaluate")).val) == 3  # type: ignore[arg-type]
    whole = _classes(tmp_path / "flat", {"x": 2, "y": 1})
    assert len(training.prepare_data(str(whole), _request(purpose="evaluate")).val) == 3  # type: ignore[arg-type]
    only_train = _classes(tmp_path / "only" / "train", {"x": 2, "y": 2}).parent
    with pytest.raises(DatasetError, match="neither test/ nor val/ to evaluate on"):
        training.prepare_data(str(only_train), _request(purpose="evaluate"))


def _error(training: ClassificationTraining, source: Path, **kwargs: object) -> str:
    with pytest.raises(DatasetError) as caught:
        training.prepare_data(str(source), _request(**kwargs))
    return str(caught.value)


def test_bad_folders_are_named_before_training(
    tmp_path: Path, training: ClassificationTraining
) -> None:
    assert f"dataset folder {tmp_path / 'nope'} does not exist" in _error(
        training, tmp_path / "nope"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no class folders" in _error(training, empty)
    assert "expected the ImageFolder layout" in _error(training, empty)
    loose = tmp_path / "loose"
    _png(loose / "a.png")
    assert "(it holds 1 loose images)" in _error(training, loose)

    no_images = _classes(tmp_path / "noimg", {"a": 2})
    (no_images / "b").mkdir()
    (no_images / "b" / "readme.txt").write_text("x")
    assert f"class folder {no_images / 'b'} holds no images" in _error(training, no_images)

    one = _classes(tmp_path / "one", {"a": 3})
    assert "holds one class folder (a); classification needs at least two" in _error(training, one)

    mismatch = tmp_path / "mismatch"
    _classes(mismatch / "train", {"a": 2, "b": 2})
    _classes(mismatch / "val", {"a": 1, "c": 1})
    message = _error(training, mismatch)
    assert "train/ and val/ must hold the same class folders" in message
    assert f"only in {mismatch / 'train'}: b" in message
    assert f"only in {mismatch / 'val'}: c" in message

    val_only = tmp_path / "valonly"
    _classes(val_only / "val", {"a": 1, "b": 1})
    assert "has val/ but no train/ folder" in _error(training, val_only)
    assert "not a folder" in _error(training, loose / "a.png")


def test_unreadable_images_are_skipped_and_counted_or_refused_when_strict(
    tmp_path: Path, training: ClassificationTraining
) -> None:
    root = _classes(tmp_path, {"a": 3, "b": 3})
    broken = root / "a" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.warns(SkippedImageWarning, match=r"skipping unreadable image .*broken\.png"):
        data = training.prepare_data(str(root), _request())
    assert [s.path for s in data.skipped] == [broken]
    assert len(data.train) + len(data.val) == 6  # type: ignore[arg-type]
    with pytest.raises(ImageReadError, match=r"cannot read image .*broken\.png"):
        training.prepare_data(str(root), _request(strict=True))
    for i in range(3):
        (root / "b" / f"{i}.png").write_bytes(b"junk")
    with pytest.warns(SkippedImageWarning):
        message = _error(training, root)
    assert f"class folder {root / 'b'} holds no readable image (3 unreadable" in message


def test_builtin_digits_are_written_once_to_the_imagefolder_layout(
    digits_cache: Path, training: ClassificationTraining
) -> None:
    folder = digits_cache / "digits"
    manifest = json.loads((folder / "dataset.json").read_text())
    assert manifest["counts"] == {"train": 1438, "val": 359}
    assert sorted(p.name for p in (folder / "train").iterdir()) == [str(d) for d in range(10)]
    sample = next((folder / "val" / "3").iterdir())
    with Image.open(sample) as image:
        assert image.size == (32, 32)
    stamp = sample.stat().st_mtime_ns
    data = training.prepare_data("builtin:digits", _request(cache_dir=digits_cache))
    assert sample.stat().st_mtime_ns == stamp  # read, not rewritten
    assert data.labels == [str(d) for d in range(10)]
    assert data.source == "builtin:digits"
    assert (len(data.train), len(data.val)) == (1438, 359)  # type: ignore[arg-type]
    assert "augment=light" in data.description  # no flips for digits
    assert data.train.transform is not data.val.transform  # type: ignore[union-attr]
    with pytest.raises(DatasetError, match=r"did you mean builtin:digits\?"):
        training.prepare_data("builtin:digts", _request(cache_dir=digits_cache))


def test_a_killed_first_write_of_digits_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = Image.Image.save
    saved: list[int] = []

    def dying_save(self: Image.Image, *args: object, **kwargs: object) -> None:
        if len(saved) == 50:
            raise KeyboardInterrupt  # the process is killed while writing
        saved.append(1)
        real_save(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Image.Image, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        digits.digits_folder(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_batch_transform_mixup_cutmix(training: ClassificationTraining) -> None:
    assert training.batch_transform(mixup=0.0, cutmix=0.0, num_outputs=4) is None
    images = torch.randn(6, 3, 8, 8)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    for mixup, cutmix in ((0.4, 0.0), (0.0, 1.0), (0.4, 1.0)):
        transform = training.batch_transform(mixup=mixup, cutmix=cutmix, num_outputs=4)
        assert transform is not None
        mixed, soft = transform(images, labels)
        assert mixed.shape == images.shape
        assert soft.shape == (6, 4)
        torch.testing.assert_close(soft.sum(dim=1), torch.ones(6))
    with pytest.raises(ValueError, match="mixup must be a finite number >= 0"):
        training.batch_transform(mixup=-0.1, cutmix=0.0, num_outputs=4)
    with pytest.raises(ValueError, match="cutmix must be a finite number >= 0"):
        training.batch_transform(mixup=0.0, cutmix=math.inf, num_outputs=4)


def test_loss_label_smoothing_and_soft_targets(training: ClassificationTraining) -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]], requires_grad=True)
    labels = torch.tensor([0, 1])
    log_p = torch.log_softmax(logits.detach(), dim=1)
    plain = -log_p[torch.arange(2), labels].mean()
    torch.testing.assert_close(training.loss(logits, labels, LossOptions()), plain)
    eps = 0.3
    smoothed = (1 - eps) * plain + eps * (-log_p.mean(dim=1)).mean()
    loss = training.loss(logits, labels, LossOptions(label_smoothing=eps))
    torch.testing.assert_close(loss, smoothed)
    assert loss > plain  # confident correct predictions cost more when smoothed
    loss.backward()
    assert logits.grad is not None
    soft = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.5, 0.5]])
    expected = -(soft * log_p).sum(dim=1).mean()
    torch.testing.assert_close(training.loss(logits, soft, LossOptions()), expected)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\)"):
        training.loss(logits, labels, LossOptions(label_smoothing=1.0))
    summed = training.loss({"a": torch.tensor(1.0), "b": torch.tensor(2.0)}, labels, LossOptions())
    assert float(summed) == 3.0


def _onehot_logits(predicted: Iterable[int], num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(list(predicted)), num_classes).float()


def test_metrics_top1_top5_f1_confusion_matrix() -> None:
    metrics = classification_metrics(3)
    assert set(metrics) == {"acc1", "f1", "confmat"}  # no top-5 with three classes
    metrics.update(_onehot_logits([0, 1, 1, 2], 3), torch.tensor([0, 1, 2, 2]))
    values = metrics.compute()
    assert float(values["acc1"]) == pytest.approx(0.75)
    # per class F1: 1, 2/3, 2/3 -> macro mean 7/9
    assert float(values["f1"]) == pytest.approx(7 / 9)
    assert values["confmat"].tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]

    many = classification_metrics(7)
    assert "acc5" in many
    logits = torch.arange(7.0).repeat(2, 1)  # ranks 6, 5, 4, 3, 2 are the top five
    many.update(logits, torch.tensor([2, 1]))
    values = many.compute()
    assert float(values["acc1"]) == 0.0
    assert float(values["acc5"]) == 0.5


def test_metrics_accept_soft_targets(training: ClassificationTraining, tmp_path: Path) -> None:
    _classes(tmp_path, {"a": 2, "b": 2})
    metrics = training.metrics(training.prepare_data(str(tmp_path), _request(val_fraction=0.5)))
    soft = torch.tensor([[0.8, 0.2], [0.3, 0.7]])
    metrics.update(_onehot_logits([0, 0], 2), soft)
    assert float(metrics.compute()["acc1"]) == 0.5
    with pytest.raises(ValueError, match="at least 2 classes"):
        classification_metrics(1)


def test_f1_is_macro_f1_even_when_the_first_batch_has_one_class() -> None:
    """torchmetrics' compute groups once merged F1 with top-5 accuracy after such a batch."""
    from sklearn.metrics import f1_score

    from visionatlas_classification.metrics import classification_metrics

    torch.manual_seed(0)
    metrics = classification_metrics(10).clone(prefix="val/")
    targets = torch.arange(10).repeat_interleave(20)  # sorted by class, like a val folder
    logits = torch.randn(200, 10)
    logits[:32] = 0
    logits[:32, 0] = 5  # the first batch: one class, predicted right
    for start in range(0, 200, 32):
        metrics.update(logits[start : start + 32], targets[start : start + 32])
    result = metrics.compute()
    expected = f1_score(targets.numpy(), logits.argmax(1).numpy(), average="macro")
    assert float(result["val/f1"]) == pytest.approx(expected, abs=1e-5)
    assert float(result["val/acc1"]) == pytest.approx(0.195)
