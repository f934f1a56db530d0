"""The training hook, catalog.load_training, and the check_training contract check."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import Dataset

from visionatlas import (
    Catalog,
    CustomFitTraining,
    DataRequest,
    LossOptions,
    PluginError,
    TaskTraining,
    TrainingData,
    TrainingSpec,
    hookimpl,
)
from visionatlas.errors import UnknownTrainingError
from visionatlas.plugins.registrar import Registrar
from visionatlas.specs import ArchitectureSpec, TaskSpec
from visionatlas.testing import CheckFailed, check_training, isolated_catalog
from visionatlas.training.protocol import missing_members

ARCH = "mobilenet_v3_small"


# -- a third-party task made trainable through the hook: multi-label colour tags ------------


class Squares(Dataset[tuple[Tensor, Tensor]]):
    """Images with a square in some of three colours; the tags say which colours appear."""

    def __init__(self, count: int, size: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.tags = torch.rand(count, 3, generator=generator) < 0.5
        self.size = size

    def __len__(self) -> int:
        return len(self.tags)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = torch.zeros(3, self.size, self.size)
        for channel in range(3):
            if self.tags[index, channel]:
                image[channel, 2:6, 2:6] = 1.0
        return image, self.tags[index].float()


class TagTraining:
    """A complete :class:`TaskTraining` in a few lines (the behaviour tests break it)."""

    task = "tagging"
    monitor = "val/f1"
    monitor_mode: Literal["min", "max"] = "max"
    builtin_datasets = {"squares": "synthetic coloured squares"}

    def prepare_data(self, source: str, request: DataRequest) -> TrainingData:
        size = request.input_size[0]
        train = None if request.purpose == "evaluate" else Squares(12, size, request.seed)
        return TrainingData(
            train=train,
            val=Squares(6, size, request.seed + 1),
            num_outputs=3,
            labels=["red", "green", "blue"],
            source=source,
        )

    def collate(self, items: Sequence[Any]) -> tuple[Tensor, Tensor]:
        return torch.stack([i[0] for i in items]), torch.stack([i[1] for i in items])

    def batch_transform(
        self, *, mixup: float, cutmix: float, num_outputs: int
    ) -> Callable[[Any, Any], tuple[Any, Any]] | None:
        if mixup or cutmix:
            raise ValueError("tagging does not support mixup or cutmix")
        return None

    def loss(self, outputs: Any, targets: Any, options: LossOptions) -> Tensor:
        return nn.functional.binary_cross_entropy_with_logits(outputs, targets)

    def metrics(self, data: TrainingData) -> Any:
        from torchmetrics import MetricCollection
        from torchmetrics.classification import MultilabelF1Score

        return MetricCollection({"f1": MultilabelF1Score(num_labels=data.num_outputs)})


def _build_tagger(config: Any, num_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, num_classes),
    )


class TagPlugin:
    def __init__(self, builder: Any = TagTraining) -> None:
        self.builder = builder

    @hookimpl
    def visionatlas_register_tasks(self, registrar: Registrar) -> None:
        registrar.add_task(TaskSpec(name="tagging", display_name="Tags", demo_architecture="tiny"))

    @hookimpl
    def visionatlas_register_architectures(self, registrar: Registrar) -> None:
        registrar.add_architecture(
            ArchitectureSpec(task="tagging", name="tiny", builder=_build_tagger)
        )

    @hookimpl
    def visionatlas_register_training(self, registrar: Registrar) -> None:
        registrar.add_training(TrainingSpec(task="tagging", builder=self.builder))


def test_a_plugin_makes_its_task_trainable_through_the_hook() -> None:
    with isolated_catalog(TagPlugin()) as catalog:
        assert catalog.list_trainable_tasks() == ["tagging"]
        assert catalog.get_training("tagging").provider is not None
        assert isinstance(catalog.load_training("tagging"), TaskTraining)
        report = next(r for r in catalog.list_plugins() if r.name == "TagPlugin")
        assert report.registered["training"] == ["tagging"]
        result = check_training("tagging", data="builtin:squares")
    assert result.architecture == "tiny"
    assert result.labels == ["red", "green", "blue"]
    assert (result.train_size, result.val_size) == (12, 6)
    assert result.batch_transform is False  # mixup declined with a ValueError, as allowed
    assert set(result.metrics) == {"f1"}


def test_load_training_errors_name_the_plugin() -> None:
    lacking = pytest.raises(PluginError, match=r"lacks the TaskTraining interface \(missing: task")
    with isolated_catalog(TagPlugin(builder=lambda: object())) as catalog, lacking:
        catalog.load_training("tagging")

    def broken() -> TagTraining:
        raise RuntimeError("no GPU here")

    failing = pytest.raises(PluginError, match=r"training builder of task 'tagging' .* no GPU here")
    with isolated_catalog(TagPlugin(builder=broken)) as catalog, failing:
        catalog.load_training("tagging")
    with isolated_catalog(TagPlugin(builder=42)) as catalog:
        assert catalog.list_trainable_tasks() == []
        report = next(r for r in catalog.list_plugins() if r.name == "TagPlugin")
        assert [p.kind for p in report.problems] == ["malformed"]
        with pytest.raises(UnknownTrainingError, match="trainable task 'tagging'"):
            catalog.get_training("tagging")


class HalfCustomFit:
    """Meant as a custom fit (it has ``fit``) but lacks most of the interface."""

    task = "tagging"

    def fit(self, model: Any, data: Any, request: Any) -> None: ...


def test_a_custom_fit_is_accepted_and_a_partial_one_named() -> None:
    message = (
        r"lacks the TaskTraining interface \(missing: monitor, .*\), and the "
        r"CustomFitTraining interface \(missing: builtin_datasets, fit_settings, "
        r"setting_hints, registry_refusal, prepare_data, model_config, evaluate, "
        r"save_model, load_model\)"
    )
    lacking = pytest.raises(PluginError, match=message)
    with isolated_catalog(TagPlugin(builder=HalfCustomFit)) as catalog, lacking:
        catalog.load_training("tagging")
    # the anomaly plugin's training is a whole CustomFitTraining (and not a TaskTraining)
    training = Catalog().load_training("anomaly_detection")
    assert isinstance(training, CustomFitTraining)
    assert not isinstance(training, TaskTraining)
    assert missing_members(training, custom_fit=True) == []


class SecondTagPlugin:
    @hookimpl
    def visionatlas_register_training(self, registrar: Registrar) -> None:
        registrar.add_training(TrainingSpec(task="tagging", builder=TagTraining))


def test_duplicate_training_for_a_task_is_reported() -> None:
    with isolated_catalog(TagPlugin(), SecondTagPlugin()) as catalog:
        report = next(r for r in catalog.list_plugins() if r.name == "SecondTagPlugin")
        assert [p.kind for p in report.problems] == ["duplicate"]
        provider = catalog.get_training("tagging").provider
        assert provider is not None
        assert provider.name == "TagPlugin"


# -- check_training finds what does not fit -------------------------------------------------


def _broken(**changes: Any) -> type:
    """A TagTraining subclass with some members replaced."""
    return type("Broken", (TagTraining,), changes)


def _detached_loss(self: Any, outputs: Any, targets: Any, options: LossOptions) -> Tensor:
    return nn.functional.binary_cross_entropy_with_logits(outputs.detach(), targets)


def _nan_loss(self: Any, outputs: Any, targets: Any, options: LossOptions) -> Tensor:
    return outputs.sum() * float("nan")


def _vector_loss(self: Any, outputs: Any, targets: Any, options: LossOptions) -> Tensor:
    return (outputs - targets).pow(2).mean(dim=0)


def _type_error_mixup(self: Any, *, mixup: float, cutmix: float, num_outputs: int) -> None:
    if mixup:
        raise TypeError("oops")


def _no_metrics(self: Any, data: TrainingData) -> Any:
    return {"f1": None}


def _bad_labels(self: Any, source: str, request: DataRequest) -> TrainingData:
    data = TagTraining.prepare_data(self, source, request)
    return dataclasses.replace(data, labels=["red"])


class Stream(torch.utils.data.IterableDataset[Any]):
    def __iter__(self) -> Any:
        return iter(())


def _unsized(self: Any, source: str, request: DataRequest) -> TrainingData:
    data = TagTraining.prepare_data(self, source, request)
    return dataclasses.replace(data, train=Stream())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"monitor": "f1"}, "monitor must name a validation metric such as 'val/acc1'"),
        ({"monitor_mode": "up"}, "monitor_mode must be 'min' or 'max'"),
        ({"monitor": "val/acc"}, "needs a scalar 'acc' in metrics\\(\\); it has f1"),
        ({"loss": _detached_loss}, "the loss has no gradient"),
        ({"loss": _nan_loss}, "the loss is not finite"),
        ({"loss": _vector_loss}, "the loss must be a scalar tensor, got \\(3,\\)"),
        ({"batch_transform": _type_error_mixup}, "a task that cannot mix must raise ValueError"),
        ({"metrics": _no_metrics}, "metrics\\(\\) returned a dict, not a torchmetrics"),
        ({"prepare_data": _bad_labels}, "1 labels for num_outputs=3"),
        ({"prepare_data": _unsized}, "the train dataset \\(Stream\\) has no len\\(\\)"),
    ],
)
def test_check_training_names_what_does_not_fit(changes: dict[str, Any], message: str) -> None:
    with isolated_catalog(TagPlugin(builder=_broken(**changes))), pytest.raises(CheckFailed) as e:
        check_training("tagging", data="builtin:squares")
    assert re.search(message, str(e.value)), str(e.value)


def test_check_training_reports_data_errors_of_the_task() -> None:
    missing = pytest.raises(CheckFailed, match=r"prepare_data\('nowhere'\) failed: .*no such")
    with isolated_catalog(TagPlugin(builder=_broken(prepare_data=_raise_missing))), missing:
        check_training("tagging", data="nowhere")


def _raise_missing(self: Any, source: str, request: DataRequest) -> TrainingData:
    raise FileNotFoundError(f"no such dataset {source}")


# -- the built-in tasks pass the check on tiny data the test writes -------------------------


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((10, 10, 3), value, dtype=np.uint8)).save(path)


def test_classification_passes_check_training(tmp_path: Path) -> None:
    for split, count in (("train", 3), ("val", 1)):
        for name, value in (("cat", 40), ("dog", 200)):
            for i in range(count):
                _png(tmp_path / split / name / f"{i}.png", value + i)
    with isolated_catalog(entry_points=True):
        result = check_training("classification", data=tmp_path, architecture=ARCH)
    assert result.labels == ["cat", "dog"]
    assert (result.train_size, result.val_size) == (6, 2)
    assert result.batch_transform is True
    assert set(result.metrics) == {"acc1", "f1"}


def test_regression_passes_check_training(tmp_path: Path) -> None:
    rows = ["path,height"]
    for i in range(6):
        _png(tmp_path / "images" / f"{i}.png", 30 * i)
        rows.append(f"images/{i}.png,{i * 1.5}")
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    with isolated_catalog(entry_points=True):
        result = check_training("regression", data=tmp_path / "data.csv", architecture=ARCH)
    assert result.labels == ["height"]
    assert result.batch_transform is False
    assert set(result.metrics) == {"mae", "rmse", "r2"}


def test_catalog_lists_the_builtin_trainable_tasks() -> None:
    catalog = Catalog()
    assert {"classification", "regression"} <= set(catalog.list_trainable_tasks())
    assert catalog.get_training("regression").builder == (
        "visionatlas_regression.training:RegressionTraining"
    )
