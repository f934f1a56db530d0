"""Catalog queries: tasks, architectures, backbones, metadata and lookup errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import visionatlas as va
from visionatlas.errors import (
    UnknownArchitectureError,
    UnknownBackboneError,
    UnknownHeadError,
    UnknownTaskError,
)

SEED_CLASSIFICATION = {
    # key: (display name, parameters with 1000 classes as torchvision counts them)
    "resnet18": ("ResNet-18", 11_689_512),
    "resnet34": ("ResNet-34", 21_797_672),
    "resnet50": ("ResNet-50", 25_557_032),
    "efficientnet_b0": ("EfficientNet-B0", 5_288_548),
    "efficientnet_b3": ("EfficientNet-B3", 12_233_232),
    "mobilenet_v3_small": ("MobileNetV3-Small", 2_542_856),
    "mobilenet_v3_large": ("MobileNetV3-Large", 5_483_032),
}


def test_tasks_of_the_installed_plugins() -> None:
    assert {"classification", "regression"} <= set(va.list_tasks())
    task = va.get_task("classification")
    assert task.display_name
    assert task.demo_architecture == "resnet18"


@pytest.mark.parametrize(("key", "expected"), SEED_CLASSIFICATION.items())
def test_seed_classification_keys_and_parameter_counts(key: str, expected: tuple[str, int]) -> None:
    spec = va.get_architecture("classification", key)
    assert (spec.display_name, spec.num_params) == expected
    assert spec.note
    assert spec.pretrained_available
    assert spec.provider is not None
    assert spec.provider.distribution == "visionatlas-classification"


def test_metadata_for_the_architecture_selector() -> None:
    meta = va.get_architecture("classification", "resnet50").as_dict()
    assert meta["display_name"] == "ResNet-50"
    assert meta["task"] == "classification"
    hp = meta["hyperparameters"]
    assert set(hp) >= {"learning_rate", "batch_size", "input_size", "epochs", "optimizer"}
    assert hp["input_size"] == [224, 224]
    assert meta["plugin"] == "classification"
    assert meta["version"] == "0.1.0"
    vit = va.get_architecture("classification", "vit_b_16").hyperparameters
    assert vit.learning_rate < hp["learning_rate"]


def test_listing_filters() -> None:
    names = va.list_architectures("classification")
    assert names == sorted(names)
    assert set(SEED_CLASSIFICATION) <= set(names)
    assert va.list_architectures("classification", pattern="resnet1*") == [
        "resnet101",
        "resnet152",
        "resnet18",
    ]
    everything = va.list_architectures()
    assert "classification/resnet50" in everything
    assert "regression/resnet50" in everything


def test_backbone_listing() -> None:
    assert va.list_backbones("resnet*")[:3] == ["resnet101", "resnet152", "resnet18"]
    assert "vit_b_16" in va.list_backbones("*VIT*")
    assert set(va.list_backbones(pretrained_only=True)) <= set(va.list_backbones())
    families = {va.get_backbone(n).family for n in va.list_backbones()}
    assert {"resnet", "efficientnet", "mobilenet_v3", "convnext", "swin", "vit"} <= families


def test_unknown_names_raise_lookup_errors_with_suggestions() -> None:
    with pytest.raises(UnknownTaskError, match="did you mean 'classification'") as info:
        va.list_architectures("clasification")
    assert isinstance(info.value, LookupError)
    assert "regression" in str(info.value)
    with pytest.raises(UnknownArchitectureError, match="'resnet50'") as arch:
        va.create_model("classification", "resnet05")
    assert arch.value.suggestions[0] == "resnet50"
    with pytest.raises(UnknownBackboneError, match="did you mean"):
        va.create_backbone("efficientnet_b9")
    with pytest.raises(UnknownHeadError, match="classification"):
        va.create_head("clasifier", in_features=4, num_outputs=2)


def test_config_backbone_conflict_is_refused() -> None:
    with pytest.raises(va.IncompatibleBackboneError, match="create_model"):
        va.create_model("classification", "resnet18", {"backbone": "resnet34"})


def test_bad_config_type_is_refused() -> None:
    with pytest.raises(TypeError, match="mapping"):
        va.create_model("classification", "resnet18", config=42)  # type: ignore[arg-type]


NONE: Any = None  # typed Any, as a caller without a type checker would pass it
NUMBER: Any = 3

NOT_NAMES: list[tuple[str, Callable[[], object], str, str]] = [
    ("create_model task", lambda: va.create_model(NONE, "resnet18"), "task", "a task name"),
    (
        "create_model architecture",
        lambda: va.create_model("classification", NONE),
        "architecture",
        "an architecture name",
    ),
    ("get_task", lambda: va.get_task(NONE), "name", "a task name"),
    (
        "get_architecture",
        lambda: va.get_architecture("classification", NUMBER),
        "name",
        "an architecture name",
    ),
    ("list_architectures", lambda: va.list_architectures(NUMBER), "task", "None or a task name"),
    ("pattern", lambda: va.list_architectures(pattern=NUMBER), "pattern", "None or a glob"),
    ("list_backbones", lambda: va.list_backbones(pattern=NUMBER), "pattern", "None or a glob"),
    ("get_backbone", lambda: va.get_backbone(NONE), "name", "a backbone name"),
    ("create_backbone", lambda: va.create_backbone(NONE), "config", "a backbone name"),
    (
        "create_head",
        lambda: va.create_head(NONE, in_features=2, num_outputs=2),
        "name",
        "a head name",
    ),
    (
        "config_schema",
        lambda: va.config_schema("regression", NONE),
        "architecture",
        "an architecture name",
    ),
    ("example_inputs", lambda: va.get_catalog().example_inputs(NONE), "task", "a task name"),
]


@pytest.mark.parametrize(
    ("case", "call", "argument", "accepted"), NOT_NAMES, ids=[c for c, *_ in NOT_NAMES]
)
def test_arguments_that_are_not_names_get_a_clear_type_error(
    case: str, call: Callable[[], object], argument: str, accepted: str
) -> None:
    with pytest.raises(va.InvalidArgumentError) as info:
        call()
    err = info.value
    assert isinstance(err, TypeError)
    assert isinstance(err, va.VisionAtlasError)
    assert err.argument == argument
    message = str(err)
    assert message.startswith(f"{argument} must be {accepted}"), message
    assert "got " in message


def test_the_type_error_lists_what_is_available() -> None:
    with pytest.raises(va.InvalidArgumentError, match="classification") as info:
        va.create_model(NONE, NONE)
    assert "got None (NoneType)" in str(info.value)
    with pytest.raises(va.InvalidArgumentError, match="convnext_base") as arch:
        va.get_architecture("classification", NONE)
    assert "more)" in str(arch.value)  # a long list is cut short


def test_an_unknown_first_party_task_names_its_distribution() -> None:
    from visionatlas import Catalog
    from visionatlas.errors import UnknownTaskError

    with pytest.raises(UnknownTaskError, match="pip install visionatlas-detection"):
        Catalog(builtins=False, entry_points=False).get_task("object_detection")
    with pytest.raises(UnknownTaskError, match="no installed plugin provides it") as info:
        Catalog(builtins=False, entry_points=False).get_task("made_up")
    assert "pip install" not in str(info.value)
