"""The helpers that visionatlas offers plugin authors (``visionatlas.testing``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import visionatlas as va
import visionatlas.testing
from visionatlas import ArchitectureSpec, Catalog, ModelConfig, Registrar, TaskSpec, hookimpl
from visionatlas.testing import (
    ArchitectureCheck,
    CheckFailed,
    check_architecture,
    check_plugin,
    isolated_catalog,
)

TOY_BACKBONE_PARAMS = 25_688


class HeadModel(nn.Module):
    """A 1x1 convolution "backbone" and a linear ``head``: 16 + 5 * num_classes parameters."""

    def __init__(self, num_classes: int, *, freeze_backbone: bool) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 4, 1)
        self.head = nn.Linear(4, num_classes)
        if freeze_backbone:
            self.body.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x).mean(dim=(2, 3)))


class Masked(nn.Module):
    """Output size depends on the values: cannot be traced on the meta device."""

    def forward(self, x: Tensor) -> Tensor:
        return x[x > 0.5]


class DictOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        y = self.conv(x)
        return {"map": y, "pooled": y.mean(dim=(2, 3))}


def build_good(config: ModelConfig, num_classes: int) -> nn.Module:
    return HeadModel(num_classes, freeze_backbone=config.freeze_backbone)


def build_ignoring_freeze(config: ModelConfig, num_classes: int) -> nn.Module:
    return HeadModel(num_classes, freeze_backbone=False)


def build_one_channel(config: ModelConfig, num_classes: int) -> nn.Module:
    return nn.Conv2d(1, num_classes, 3)


def build_raising(config: ModelConfig, num_classes: int) -> nn.Module:
    raise RuntimeError("this builder always fails")


def build_masked(config: ModelConfig, num_classes: int) -> nn.Module:
    return Masked()


def build_dict_output(config: ModelConfig, num_classes: int) -> nn.Module:
    return DictOutput()


def make_inputs(*, batch_size: int, input_size: tuple[int, int]) -> Tensor:
    h, w = input_size
    return torch.full((batch_size, 3, h, w + 1), 0.25)


def make_broken_inputs(*, batch_size: int, input_size: tuple[int, int]) -> Tensor:
    raise ValueError("no inputs today")


class Workbench:
    """A plugin registering one architecture per builder above, under task ``bench``.

    Tasks ``custom_inputs`` and ``broken_inputs`` declare ``example_inputs``; ``bench`` has
    no task spec, so checks use a default random batch.
    """

    ARCHITECTURES = {
        "good": (build_good, 16 + 5 * 2),
        "wrong_params": (build_good, 1),
        "ignores_freeze": (build_ignoring_freeze, None),
        "one_channel": (build_one_channel, None),
        "raising": (build_raising, None),
        "masked": (build_masked, None),
        "dict_output": (build_dict_output, 8),
    }

    @hookimpl
    def visionatlas_register_tasks(self, registrar: Registrar) -> None:
        for name, inputs in (("custom_inputs", make_inputs), ("broken_inputs", make_broken_inputs)):
            registrar.add_task(TaskSpec(name=name, display_name=name, example_inputs=inputs))

    @hookimpl
    def visionatlas_register_architectures(self, registrar: Registrar) -> None:
        for task in ("custom_inputs", "broken_inputs"):
            registrar.add_architecture(ArchitectureSpec(task=task, name="good", builder=build_good))
        for name, (builder, num_params) in self.ARCHITECTURES.items():
            registrar.add_architecture(
                ArchitectureSpec(
                    task="bench",
                    name=name,
                    builder=builder,
                    num_params=num_params,
                    default_num_classes=2,
                )
            )


class Silent:
    """Loads fine and registers nothing."""

    @hookimpl
    def visionatlas_api_version(self) -> int:
        return va.API_VERSION


@pytest.fixture
def bench() -> Catalog:
    with isolated_catalog(Workbench(), builtins=False) as catalog:
        yield catalog


# -- catalogs ----------------------------------------------------------------------------------


def test_isolated_catalog_is_process_wide_inside_the_block() -> None:
    outside = va.get_catalog()
    with isolated_catalog(Workbench(), builtins=False) as catalog:
        assert va.get_catalog() is catalog
        assert [r.name for r in va.list_plugins()] == ["Workbench"]
        assert va.list_tasks() == ["bench", "broken_inputs", "custom_inputs"]
    assert va.get_catalog() is outside
    with isolated_catalog() as builtins_only:
        assert [r.name for r in builtins_only.list_plugins()] == [
            "builtin-backbones",
            "builtin-heads",
        ]


def test_isolated_catalog_can_add_entry_points(fixture_plugins_on_path: Path) -> None:
    with isolated_catalog(Workbench(), entry_points=True) as catalog:
        names = [r.name for r in catalog.list_plugins()]
    assert names[0] == "builtin-backbones"
    assert names[-1] == "Workbench"  # given plugins come after discovered ones
    assert {"classification", "toy"} <= set(names)


def test_visionatlas_catalog_fixture(visionatlas_catalog: Catalog) -> None:
    assert va.get_catalog() is visionatlas_catalog
    assert {"classification", "regression"} <= set(visionatlas_catalog.list_tasks())


def test_isolated_visionatlas_catalog_fixture(isolated_visionatlas_catalog: Catalog) -> None:
    assert va.get_catalog() is isolated_visionatlas_catalog
    assert [r.name for r in va.list_plugins()] == ["builtin-backbones", "builtin-heads"]
    assert va.list_tasks() == []
    assert "resnet18" in va.list_backbones()


def test_module_is_the_registered_pytest_plugin(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.get_plugin("visionatlas") is visionatlas.testing


def test_importing_the_helpers_is_cheap() -> None:
    code = (
        "import json, sys, visionatlas.testing\n"
        "print(json.dumps(sorted(m for m in ('torch', 'torchvision', 'pydantic')"
        " if m in sys.modules)))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("VISIONATLAS_")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


# -- check_plugin ------------------------------------------------------------------------------


def test_check_plugin_passes_for_a_clean_plugin(third_party_catalog: Catalog) -> None:
    report = check_plugin("toy")
    assert report.distribution == "visionatlas-toy"
    assert check_plugin("visionatlas-toy", catalog=third_party_catalog) is report
    assert check_plugin("classification").status == "ok"


@pytest.mark.parametrize(
    ("plugin", "expected"),
    [
        ("malformed", r"status 'problems'(.|\n)*unknown-hook(.|\n)*did you mean"),
        ("broken-import", r"'failed'(.|\n)*\[import-error during import\].*broken on purpose"),
        ("incompatible", r"'incompatible'(.|\n)*hook API 99"),
        ("nope", r"no plugin named 'nope'.*discovered plugins: builtin-.*broken-import"),
    ],
)
def test_check_plugin_fails_with_the_problems(
    third_party_catalog: Catalog, plugin: str, expected: str
) -> None:
    with pytest.raises(CheckFailed, match=expected):
        check_plugin(plugin)


def test_check_plugin_fails_for_blocked_and_empty_plugins(
    third_party_catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISIONATLAS_BLOCKED_PLUGINS", "toy")
    with pytest.raises(CheckFailed, match=r"'toy' .*status 'blocked'"):
        check_plugin("toy", catalog=third_party_catalog)
    with (
        isolated_catalog(Silent(), builtins=False),
        pytest.raises(AssertionError, match=r"'Silent' .*registered nothing"),
    ):
        check_plugin("Silent")


# -- check_architecture ------------------------------------------------------------------------


def test_check_architecture_on_a_third_party_architecture(third_party_catalog: Catalog) -> None:
    result = check_architecture("toy_counting", "toy_counter")
    assert result == ArchitectureCheck(
        task="toy_counting",
        name="toy_counter",
        input_shape=(2, 3, 64, 64),
        output_shape=(2, 3),
        num_params=TOY_BACKBONE_PARAMS + 48 * 3 + 3,
        default_num_params=TOY_BACKBONE_PARAMS + 48 * 5 + 5,
    )
    derived = check_architecture(
        "classification", "toy_cnn", num_classes=4, batch_size=1, input_size=(32, 48)
    )
    assert (derived.input_shape, derived.output_shape) == ((1, 3, 32, 48), (1, 4))
    assert derived.default_num_params == TOY_BACKBONE_PARAMS + 48 * 1000 + 1000


def test_check_architecture_on_a_torchvision_classifier(visionatlas_catalog: Catalog) -> None:
    result = check_architecture("classification", "resnet18", input_size=(32, 32))
    assert result.output_shape == (2, 3)
    assert result.default_num_params == va.get_architecture("classification", "resnet18").num_params
    assert result.default_num_params == 11_689_512  # torchvision's resnet18


def test_check_architecture_passes_and_skips_what_does_not_apply(bench: Catalog) -> None:
    good = check_architecture("bench", "good", num_classes=2)
    assert (good.num_params, good.default_num_params) == (26, 26)
    # dict output: no shape comparison, shapes reported per key
    out = check_architecture("bench", "dict_output", input_size=(4, 4))
    assert out.output_shape == {"map": (2, 2, 4, 4), "pooled": (2, 2)}
    assert out.default_num_params == 8
    # value-dependent output shapes cannot be inferred; that check can be turned off
    masked = check_architecture("bench", "masked", batch_size=1, infer_shape=False)
    assert len(masked.output_shape) == 1


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "wrong_params",
            r"bench/wrong_params: the spec says num_params=1, but the model built with the "
            r"default config and default_num_classes=2 has 26 parameters \(difference \+25\)",
        ),
        (
            "ignores_freeze",
            r"bench/ignores_freeze: with freeze_backbone=True exactly the head's parameters "
            r"should be trainable; trainable outside the head: body\.bias, body\.weight",
        ),
        ("one_channel", r"bench/one_channel: forward pass on example inputs \(2, 3, 64, 64\) "),
        ("raising", r"cannot build bench/raising .*RuntimeError: this builder always fails"),
        ("masked", r"bench/masked: infer_output_shape failed although the forward pass worked"),
    ],
)
def test_check_architecture_failures_say_what_is_wrong(
    bench: Catalog, name: str, expected: str
) -> None:
    with pytest.raises(CheckFailed, match=expected):
        check_architecture("bench", name)


def test_check_architecture_uses_the_tasks_example_inputs(bench: Catalog) -> None:
    result = check_architecture("custom_inputs", "good", batch_size=3, input_size=(8, 8))
    assert result.input_shape == (3, 3, 8, 9)  # from make_inputs, not a default batch
    assert result.output_shape == (3, 3)
    with pytest.raises(CheckFailed, match=r"example_inputs .*make_broken_inputs.* failed"):
        check_architecture("broken_inputs", "good")
