"""A third-party task that trains with its own fit (a ``CustomFitTraining``), end to end.

The task ``novelty`` scores images by their distance to the mean training image: there is
nothing to learn by gradient, so it registers a custom fit through the same hook as
per-batch tasks. The engine must run it without Lightning, write the run folder, register
it (its fitted state is all in its weights), and evaluate the run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from visionatlas import (
    CustomFitTraining,
    DataRequest,
    FitEvaluation,
    FitOutcome,
    FitRequest,
    ModelRegistry,
    TrainingData,
    TrainingSpec,
    hookimpl,
)
from visionatlas.errors import DatasetError
from visionatlas.plugins.registrar import Registrar
from visionatlas.specs import ArchitectureSpec, TaskSpec
from visionatlas.testing import isolated_catalog
from visionatlas_train import ConfigError, evaluate, train

SIZE = 8


class MeanImage(nn.Module):
    """Anomaly score: the mean squared difference to the mean training image."""

    def __init__(self) -> None:
        super().__init__()
        self.mean: Tensor
        self.register_buffer("mean", torch.zeros(3, SIZE, SIZE))

    def forward(self, images: Tensor) -> Tensor:
        return (images - self.mean).pow(2).mean(dim=(1, 2, 3))


def _build(config: Any, num_classes: int) -> MeanImage:
    return MeanImage()


class MeanFit:
    task = "novelty"
    builtin_datasets: Mapping[str, str] = {"grey": "grey images around 0.5, and bright ones"}
    fit_settings: Mapping[str, str] = {"seed": "the images drawn", "model": "the model's config"}
    setting_hints: Mapping[str, str] = {"learning_rate": "nothing is learnt by gradient"}
    registry_refusal: str | None = None

    def prepare_data(self, source: str, request: DataRequest) -> TrainingData:
        if source != "builtin:grey":
            raise DatasetError(f"no data at {source}; try builtin:grey")
        generator = torch.Generator().manual_seed(request.seed)
        normal = 0.5 + 0.05 * torch.randn(12, 3, SIZE, SIZE, generator=generator)
        if request.purpose == "fit":
            return TrainingData(
                train=TensorDataset(normal[:10]), val=TensorDataset(normal[10:]), num_outputs=1
            )
        images = torch.cat([normal[:4], normal[4:8] + 0.4])
        labels = torch.tensor([0] * 4 + [1] * 4)
        return TrainingData(train=None, val=TensorDataset(images, labels), num_outputs=1)

    def model_config(self, request: FitRequest) -> dict[str, Any]:
        return dict(request.config.get("model") or {})

    def fit(self, model: Any, data: TrainingData, request: FitRequest) -> FitOutcome:
        assert isinstance(data.train, TensorDataset)
        images = data.train.tensors[0]
        model.mean.copy_(images.mean(dim=0))
        spread = float(model(images).mean())
        if request.log is not None:
            request.log(f"averaged {len(images)} images")
        return FitOutcome(
            metrics={"spread": spread},
            history=[{"step": 1, "fit/spread": spread}],
            headline=f"spread {spread:.4f}",
        )

    def evaluate(self, model: Any, data: TrainingData, request: FitRequest) -> FitEvaluation:
        assert isinstance(data.val, TensorDataset)
        images, labels = data.val.tensors
        scores = model(images)
        gap = float(scores[labels == 1].min() - scores[labels == 0].max())
        return FitEvaluation(metrics={"gap": gap})

    def save_model(self, model: Any, path: Path) -> Path:
        path.mkdir(parents=True)
        save_file({"mean": model.mean.contiguous()}, str(path / "mean.safetensors"))
        return path

    def load_model(self, path: Path, *, device: str | None = None) -> MeanImage:
        model = MeanImage()
        model.mean.copy_(load_file(str(path / "mean.safetensors"))["mean"])
        return model.to(device or "cpu")


class NoveltyPlugin:
    @hookimpl
    def visionatlas_register_tasks(self, registrar: Registrar) -> None:
        registrar.add_task(
            TaskSpec(name="novelty", demo_architecture="mean", uses_num_classes=False)
        )

    @hookimpl
    def visionatlas_register_architectures(self, registrar: Registrar) -> None:
        registrar.add_architecture(
            ArchitectureSpec(task="novelty", name="mean", builder=_build, default_num_classes=1)
        )

    @hookimpl
    def visionatlas_register_training(self, registrar: Registrar) -> None:
        registrar.add_training(TrainingSpec(task="novelty", builder=MeanFit))


def test_a_third_party_custom_fit_trains_registers_and_evaluates(tmp_path: Path) -> None:
    assert isinstance(MeanFit(), CustomFitTraining)
    lines: list[str] = []

    class Stream:
        def write(self, text: str) -> None:
            lines.extend(t for t in text.splitlines() if t)

        def flush(self) -> None:
            pass

    store = tmp_path / "registry"
    with isolated_catalog(NoveltyPlugin()) as catalog:
        result = train(
            "novelty",
            "mean",
            "builtin:grey",
            {"seed": 2},
            out=tmp_path / "run",
            register="grey@1.0.0",
            registry=store,
            stream=Stream(),  # type: ignore[arg-type]
        )
        assert (
            lines[0]
            == "training novelty/mean on builtin:grey with its own fit: 10 train and 2 val images"
        )
        assert json.loads(lines[1].removeprefix("config: ")) == {"seed": 2, "model": {}}
        assert lines[2] == "averaged 10 images"
        assert lines[3].startswith("done: fitted in ")
        assert lines[3].endswith(f"run in {tmp_path / 'run'}; registered grey@1.0.0")
        assert result.metrics["spread"] == pytest.approx(0.0025, rel=0.3)
        assert (tmp_path / "run" / "model" / "mean.safetensors").is_file()
        assert (tmp_path / "run" / "metrics.csv").read_text() == "step,fit/spread\n" + (
            f"1,{result.metrics['spread']:.6g}\n"
        )
        summary = json.loads((tmp_path / "run" / "summary.json").read_text())
        assert summary["registered"] == "grey@1.0.0"
        loaded = ModelRegistry(store, catalog=catalog).load("grey", "1.0.0")
        assert torch.equal(loaded.mean, result.model.mean)  # type: ignore[union-attr, arg-type]

        report = evaluate(tmp_path / "run", "builtin:grey")
        assert report.metrics["gap"] > 0
        assert report.num_images == 8
        assert report.source == f"run {tmp_path / 'run'}"

        with pytest.raises(ConfigError, match=r"learning_rate does not apply to novelty.*"
                           r"nothing is learnt by gradient.*apply are model, seed"):  # fmt: skip
            train("novelty", "mean", "builtin:grey", {"learning_rate": 0.1}, out=tmp_path / "r2")
        with pytest.raises(DatasetError, match="no data at nowhere"):
            train("novelty", "mean", "nowhere", out=tmp_path / "r3", verbose=False)
        assert not (tmp_path / "r2").exists()
        assert not (tmp_path / "r3").exists()
