"""The ``visionatlas`` command line: in-process through ``main`` and a few subprocess runs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from visionatlas import Catalog, hookimpl, use_catalog
from visionatlas.cli import main
from visionatlas.cli._tables import (
    describe_variable_output,
    format_table,
    human_count,
    summarize,
)
from visionatlas.plugins.registrar import Registrar
from visionatlas.specs import ArchitectureSpec, BackboneSpec, FeatureLevel, TaskSpec


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_subprocess(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, check=False, timeout=120
    )


# -- a tiny catalog of toy tasks, for behaviour that needs no real backbone ---------------------
class _Tiny(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(3, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x.mean(dim=(2, 3)))


class _Detector(nn.Module):
    """Returns one dict per image with a varying number of detections."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        return [
            {"boxes": torch.zeros(i + 1, 4) * self.scale, "labels": torch.zeros(i + 1)}
            for i in range(len(images))
        ]


def _tiny(config: Any, num_classes: int) -> nn.Module:
    return _Tiny(num_classes)


def _detector(config: Any, num_classes: int) -> nn.Module:
    return _Detector()


def _broken(config: Any, num_classes: int) -> nn.Module:
    raise RuntimeError("this builder always fails")


def _image_list(*, batch_size: int, input_size: tuple[int, int]) -> list[Tensor]:
    return [torch.rand(3, *input_size) for _ in range(batch_size)]


class ToyPlugin:
    @hookimpl
    def visionatlas_register_tasks(self, registrar: Registrar) -> None:
        registrar.add_task(TaskSpec(name="toy", display_name="Toy", demo_architecture="tiny"))
        registrar.add_task(
            TaskSpec(name="toydet", display_name="Toy detection", example_inputs=_image_list)
        )
        registrar.add_task(TaskSpec(name="broken", display_name="Broken"))

    @hookimpl
    def visionatlas_register_backbones(self, registrar: Registrar) -> None:
        registrar.add_backbone(
            BackboneSpec(
                name="toynet",
                builder=_tiny,
                family="toy",
                out_channels=8,
                pre_logits_dim=8,
                num_params=1234,
                feature_levels=(
                    FeatureLevel(name="feat1", channels=4, stride=2),
                    FeatureLevel(name="feat2", channels=8, stride=4),
                ),
                pretrained_weights="Toy_Weights.V1",
            )
        )

    @hookimpl
    def visionatlas_register_architectures(self, registrar: Registrar) -> None:
        for task, name, builder in [
            ("toy", "tiny", _tiny),
            ("toy", "tiny2", _tiny),
            ("toydet", "det", _detector),
            ("broken", "boom", _broken),
        ]:
            registrar.add_architecture(
                ArchitectureSpec(
                    task=task,
                    name=name,
                    builder=builder,
                    display_name=name.title(),
                    note=f"a {name} model",
                    num_params=3 * 10 + 10,
                    default_num_classes=10,
                    backbone="toynet" if name == "tiny" else None,
                )
            )


@pytest.fixture
def toy_catalog() -> Iterator[Catalog]:
    catalog = Catalog(builtins=False, entry_points=False, plugins=[ToyPlugin()])
    with use_catalog(catalog):
        yield catalog


# -- helpers -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "-"),
        (0, "0"),
        (999, "999"),
        (1_500, "1.5K"),
        (25_557_032, "25.6M"),
        (999_960, "1.0M"),
        (1_300_000_000, "1.3B"),
    ],
)
def test_human_count(value: int | None, text: str) -> None:
    assert human_count(value) == text


def test_format_table_aligns_columns() -> None:
    table = format_table(("Name", "N"), [("a", 1), ("long-name", 12345)], right=(1,))
    lines = table.splitlines()
    assert lines[0] == "Name           N"
    assert lines[1] == "---------  -----"
    assert lines[2] == "a              1"
    assert lines[3] == "long-name  12345"


def test_summarize_tensors_dicts_and_lists() -> None:
    assert summarize(torch.zeros(2, 1000)) == "[2, 1000]"
    assert summarize({"out": torch.zeros(1, 3), "aux": torch.zeros(1, 3)}) == (
        "{out: [1, 3], aux: [1, 3]}"
    )
    detections = [{"boxes": torch.zeros(k, 4), "labels": torch.zeros(k)} for k in (3, 5)]
    assert summarize(detections) == "list[2] of {boxes: [k, 4], labels: [k]}"
    assert summarize((torch.zeros(2, 10), torch.zeros(2, 5, 5))) == "tuple([2, 10], [2, 5, 5])"
    assert summarize(((2, 1000), [(1, 4), (2, 4)]), inferred=True) == (
        "tuple([2, 1000], list[2] of [k, 4])"
    )


# -- list ------------------------------------------------------------------------------------
def test_list_shows_every_architecture(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list")
    assert code == 0
    header = out.splitlines()[0].split()
    assert header[:2] == ["Task", "Name"]
    assert "Params" in header
    assert "Plugin" in header
    rows = [line.split() for line in out.splitlines()[2:] if line.strip()]
    tasks = {row[0] for row in rows if len(row) > 2}
    assert {"classification", "regression"} <= tasks
    resnet50 = next(
        line for line in out.splitlines() if line.split()[:2] == ["classification", "resnet50"]
    )
    assert "ResNet-50" in resnet50
    assert "25.6M" in resnet50
    assert "classification" in resnet50


def test_list_json_with_task_and_pattern(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list", "--task", "classification", "--pattern", "resnet*", "--json")
    assert code == 0
    data = json.loads(out)
    assert {d["task"] for d in data} == {"classification"}
    assert all(d["name"].startswith("resnet") for d in data)
    by_name = {d["name"]: d for d in data}
    assert by_name["resnet50"]["num_params"] == 25_557_032
    assert by_name["resnet50"]["plugin"] == "classification"


def test_list_filters_toy_catalog(toy_catalog: Catalog, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list", "--task", "toy", "--json")
    assert code == 0
    assert [d["name"] for d in json.loads(out)] == ["tiny", "tiny2"]
    # a pattern without wildcards matches as a substring
    code, out, _ = run(capsys, "list", "--pattern", "iny", "--json")
    assert [d["name"] for d in json.loads(out)] == ["tiny", "tiny2"]
    code, out, _ = run(capsys, "list", "--pattern", "nothing*")
    assert code == 0
    assert "No architectures match" in out


def test_list_unknown_task_exits_2(
    toy_catalog: Catalog, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "list", "--task", "toi")
    assert code == 2
    assert out == ""
    assert "unknown task 'toi'" in err
    assert "did you mean 'toy'" in err
    assert "Traceback" not in err


# -- show --------------------------------------------------------------------------------------
def test_show_metadata_hyperparameters_and_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "show", "classification", "resnet50")
    assert code == 0
    for text in (
        "ResNet-50",
        "25,557,032 (25.6M)",
        "learning_rate",
        "batch_size",
        "visionatlas-classification",
        "Backbone resnet50",
        "feat4",
        "2048",
    ):
        assert text in out, text


def test_show_json_and_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "show", "regression", "resnet18", "--json", "--schema")
    assert code == 0
    data = json.loads(out)
    assert data["name"] == "resnet18"
    assert data["plugin"] == "regression"
    assert data["hyperparameters"]["input_size"] == [224, 224]
    assert data["backbone_info"]["out_channels"] == 512
    assert [lv["stride"] for lv in data["backbone_info"]["feature_levels"]] == [4, 8, 16, 32]
    assert "num_outputs" in data["config_schema"]["properties"]


def test_show_toy_backbone_info(toy_catalog: Catalog, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "show", "toy", "tiny", "--json")
    assert code == 0
    info = json.loads(out)["backbone_info"]
    assert info["family"] == "toy"
    assert info["pretrained_weights"] == "Toy_Weights.V1"
    assert info["feature_levels"] == [
        {"name": "feat1", "channels": 4, "stride": 2},
        {"name": "feat2", "channels": 8, "stride": 4},
    ]
    code, out, _ = run(capsys, "show", "toy", "tiny2", "--json")
    assert json.loads(out)["backbone_info"] is None


def test_show_unknown_architecture_suggests(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "show", "classification", "resnet5")
    assert code == 2
    assert out == ""
    assert "unknown architecture 'resnet5'" in err
    assert "did you mean" in err
    assert "resnet50" in err
    assert "Traceback" not in err


# -- backbones and plugins ---------------------------------------------------------------------
def test_backbones_pattern(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "backbones", "resnet*", "--json")
    assert code == 0
    data = json.loads(out)
    names = [d["name"] for d in data]
    assert "resnet50" in names
    assert all(n.startswith("resnet") for n in names)
    resnet50 = data[names.index("resnet50")]
    assert resnet50["out_channels"] == 2048
    assert resnet50["family"] == "resnet"
    code, out, _ = run(capsys, "backbones", "resnet5*")
    assert code == 0
    assert "resnet50" in out
    assert "4,8,16,32" in out
    assert "resnet18" not in out


def test_backbones_pretrained_only(
    toy_catalog: Catalog, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "backbones", "--pretrained-only")
    assert code == 0
    assert "toynet" in out
    assert "Toy_Weights.V1" in out
    assert "1.2K" in out


def test_plugins(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "plugins")
    assert code == 0
    for text in (
        "builtin-backbones",
        "classification",
        "regression",
        "visionatlas-classification",
        "0.1.0",
    ):
        assert text in out, text
    assert "failed" not in out, out
    code, out, _ = run(capsys, "plugins", "--json")
    reports = {r["name"]: r for r in json.loads(out)}
    assert reports["classification"]["status"] == "ok"
    assert reports["classification"]["counts"]["task"] == 1
    assert reports["builtin-backbones"]["counts"]["backbone"] > 10


def test_plugins_show_problems_one_line_each(capsys: pytest.CaptureFixture[str]) -> None:
    class Raising:
        @hookimpl
        def visionatlas_register_tasks(self, registrar: Registrar) -> None:
            raise ValueError("first line\nsecond line")

    with use_catalog(Catalog(builtins=False, entry_points=False, plugins=[Raising()])):
        code, out, err = run(capsys, "plugins")
    assert code == 0
    assert err == ""
    problem_lines = [line for line in out.splitlines() if "first line" in line]
    assert len(problem_lines) == 1
    assert "Raising: [hook-error during visionatlas_register_tasks]" in problem_lines[0]
    assert "second line" in problem_lines[0]


# -- demo --------------------------------------------------------------------------------------
def test_demo_classification(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "demo",
        "--task",
        "classification",
        "--input-size",
        "64",
        "--batch-size",
        "1",
        "--repeats",
        "1",
    )
    assert code == 0, out
    row = next(line for line in out.splitlines() if line.startswith("classification"))
    assert "resnet18" in row
    assert "[1, 3, 64, 64]" in row
    assert "[1, 1000]" in row
    assert "11.7M" in row
    assert "ms" in row


def test_demo_json_toy_tasks_and_failure(
    toy_catalog: Catalog, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "demo", "--json", "--input-size", "8x6", "--batch-size", "2")
    assert code == 1  # the broken task fails, the others still run
    results = {r["task"]: r for r in json.loads(out)["results"]}
    assert results["broken"]["status"] == "error"
    assert "RuntimeError: this builder always fails" in results["broken"]["error"]
    toy = results["toy"]
    assert toy["status"] == "ok"
    assert toy["architecture"] == "tiny"
    assert toy["input_shape"] == [2, 3, 8, 6]
    assert toy["output_shape"] == [2, 10]
    assert toy["inferred_output"] == "[2, 10]"
    assert toy["num_params"] == 40
    assert len(toy["forward_runs_s"]) == 3
    assert toy["forward_s"] >= 0
    det = results["toydet"]
    assert det["architecture"] == "det"  # no demo_architecture: the first one
    assert det["input"] == "list[2] of [3, 8, 6]"
    assert det["output"] == "list[2] of {boxes: [k, 4], labels: [k]}"


def test_demo_table_shows_errors(toy_catalog: Catalog, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "demo", "--task", "broken", "toy", "--input-size", "8")
    assert code == 1
    broken = next(line for line in out.splitlines() if line.startswith("broken"))
    assert "ERROR: RuntimeError: this builder always fails" in broken
    toy = next(line for line in out.splitlines() if line.startswith("toy "))
    assert "[2, 3, 8, 8]" in toy
    assert "[2, 10]" in toy
    assert "1 of 2 tasks failed" in err


class _Thresholding(nn.Module):
    """Keeps the detections scoring over 0.5: how many depends on the pixel values."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        results = []
        for image in images:
            scores = image.flatten()[:8] * self.scale
            keep = scores > 0.5
            results.append({"boxes": torch.zeros(8, 4)[keep], "scores": scores[keep]})
        return results


class _ThresholdingPlugin:
    @hookimpl
    def visionatlas_register_tasks(self, registrar: Registrar) -> None:
        registrar.add_task(
            TaskSpec(name="thresh", display_name="Thresholding", example_inputs=_image_list)
        )

    @hookimpl
    def visionatlas_register_architectures(self, registrar: Registrar) -> None:
        registrar.add_architecture(
            ArchitectureSpec(
                task="thresh",
                name="keep",
                builder=lambda config, num_classes: _Thresholding(),
                display_name="Keep",
                num_params=1,
                default_num_classes=1,
            )
        )


def test_demo_describes_a_data_dependent_output_as_such(
    capsys: pytest.CaptureFixture[str],
) -> None:
    catalog = Catalog(builtins=False, entry_points=False, plugins=[_ThresholdingPlugin()])
    with use_catalog(catalog):
        code, out, _ = run(
            capsys, "demo", "--task", "thresh", "--input-size", "8", "--repeats", "1"
        )
        assert code == 0, out
        row = next(line for line in out.splitlines() if line.startswith("thresh"))
        assert "data-dependent" in row
        assert "shape inference failed" not in out
        assert "Error" not in out
        note = next(line for line in out.splitlines() if "depends on the data" in line)
        assert "per image, a variable number K of detections (boxes (K, 4), scores (K,))" in note
        code, out, _ = run(capsys, "demo", "--task", "thresh", "--json", "--input-size", "8")
        (result,) = json.loads(out)["results"]
        assert result["inferred_output"] is None
        assert result["inferred_error"] is None
        assert result["variable_output"].startswith("per image, a variable number K of detections")


def test_describe_variable_output() -> None:
    two = [
        {"boxes": torch.zeros(3, 4), "labels": torch.zeros(3), "masks": torch.zeros(3, 1, 8, 8)},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0), "masks": torch.zeros(0, 1, 8, 8)},
    ]
    assert describe_variable_output(two) == (
        "per image, a variable number K of detections (boxes (K, 4), labels (K,), "
        "masks (K, 1, 8, 8)); K = 3, 0 here"
    )
    assert describe_variable_output([{"points": torch.zeros(5, 2)}]) == (
        "per image, a variable number K of rows (points (K, 2)); K = 5 here"
    )
    ragged = [{"boxes": torch.zeros(3, 4), "labels": torch.zeros(2)}]
    assert describe_variable_output(ragged) == (
        "its size depends on the data; for this batch: list[1] of {boxes: [3, 4], labels: [2]}"
    )


def test_demo_unknown_task_and_bad_arguments(
    toy_catalog: Catalog, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "demo", "--task", "toi")
    assert code == 2
    assert "did you mean 'toy'" in err
    code, _, err = run(capsys, "demo", "--batch-size", "0")
    assert code == 2
    assert "positive integer" in err
    code, _, err = run(capsys, "demo", "--input-size", "big")
    assert code == 2
    assert "HxW" in err


# -- the command as a process ------------------------------------------------------------------
def test_list_imports_no_torch_torchvision_or_pydantic() -> None:
    code = (
        "import sys\n"
        "from visionatlas.cli import main\n"
        "assert main(['list']) == 0\n"
        "assert main(['list', '--json']) == 0\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'torch', 'torchvision', 'pydantic'})\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
        "sys.exit(3 if heavy else 0)\n"
    )
    result = run_subprocess("-c", code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resnet50" in result.stdout


def test_python_m_visionatlas() -> None:
    result = run_subprocess("-m", "visionatlas", "--version")
    assert result.returncode == 0
    assert result.stdout.startswith("visionatlas ")
    result = run_subprocess("-m", "visionatlas", "show", "classification", "resnt50")
    assert result.returncode == 2
    assert "did you mean 'resnet50'" in result.stderr
    assert "Traceback" not in result.stderr


# -- absurd sizes and bad pixels (issue 11) -----------------------------------------------------
@pytest.mark.parametrize("size", ["100000", "4096x100000", "5000x224", "0"])
def test_demo_refuses_absurd_input_sizes_with_one_error_line(
    toy_catalog: Catalog, capsys: pytest.CaptureFixture[str], size: str
) -> None:
    code, out, err = run(capsys, "demo", "--input-size", size)
    assert code == 2
    assert out == ""
    (line,) = err.splitlines()  # one line: what was wrong and what is accepted
    assert line.startswith("visionatlas demo: error: argument --input-size:")
    assert "from 1 to 4096" in line
    assert repr(size) in line
    assert "Traceback" not in err
    assert "running" not in err  # nothing was built


def test_export_refuses_absurd_input_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys, "export", "classification", "resnet18", "--out", "x.onnx", "--input-size", "99999"
    )
    assert code == 2
    (line,) = err.splitlines()
    assert line.startswith("visionatlas export: error: argument --input-size:")
    assert "from 1 to 4096" in line


def test_demo_accepts_the_largest_size(
    toy_catalog: Catalog, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, _ = run(capsys, "demo", "--task", "toy", "--input-size", "4096x8", "--repeats", "1")
    assert code == 0


def _nan_images(*, batch_size: int, input_size: tuple[int, int]) -> Tensor:
    images = torch.rand(batch_size, 3, *input_size)
    images[batch_size - 1, 0, 0, 0] = float("nan")
    return images


class _NanPlugin:
    @hookimpl
    def visionatlas_register_tasks(self, registrar: Registrar) -> None:
        registrar.add_task(
            TaskSpec(
                name="nan",
                display_name="Bad pixels",
                example_inputs=_nan_images,
                input_kind="image_batch",
            )
        )

    @hookimpl
    def visionatlas_register_architectures(self, registrar: Registrar) -> None:
        registrar.add_architecture(
            ArchitectureSpec(task="nan", name="tiny", builder=_tiny, default_num_classes=2)
        )


def test_cli_runs_models_with_the_value_check_on(capsys: pytest.CaptureFixture[str]) -> None:
    catalog = Catalog(builtins=False, entry_points=False, plugins=[_NanPlugin()])
    with use_catalog(catalog):
        code, out, _ = run(capsys, "demo", "--input-size", "8", "--json")
        assert code == 1
        (result,) = json.loads(out)["results"]
        assert result["error"].startswith("NonFiniteInputError: 1 image given to nan/tiny")
        assert "images[1] has 1 NaN, 0 +inf and 0 -inf values" in result["error"]
        code, out, _ = run(capsys, "demo", "--input-size", "8", "--json", "--no-check-inputs")
        assert code == 0
        (result,) = json.loads(out)["results"]
        assert result["status"] == "ok"
