"""Input checks of models built by ``create_model``: declared per task, installed by the core.

A toy catalog declares one task per input kind (and one that declares none), so these tests
need no torchvision model; the plugin tests check the real tasks.
"""

from __future__ import annotations

import copy
import pickle
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import visionatlas as va
from visionatlas import Catalog, hookimpl, use_catalog
from visionatlas.inputs import InputCheck, install_input_check
from visionatlas.lifecycle.rebuild import rebuild_model
from visionatlas.plugins.registrar import Registrar
from visionatlas.specs import INPUT_KINDS, ArchitectureSpec, TaskSpec


class _Pooled(nn.Module):
    """``(N, 3, H, W)`` -> ``(N, num_classes)``; NaN in, NaN out."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(3, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        return self.fc(images.mean(dim=(2, 3)))


class _PerImage(nn.Module):
    """A list of ``(3, H, W)`` images -> one score tensor per image."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(3, num_classes)

    def forward(self, images: list[Tensor], targets: Any = None) -> list[Tensor]:
        return [self.fc(image.mean(dim=(1, 2))) for image in images]


class _InputsPlugin:
    @hookimpl
    def visionatlas_register_tasks(self, registrar: Registrar) -> None:
        registrar.add_task(TaskSpec(name="batch", display_name="B", input_kind="image_batch"))
        registrar.add_task(TaskSpec(name="listed", display_name="L", input_kind="image_list"))
        registrar.add_task(TaskSpec(name="free", display_name="F"))

    @hookimpl
    def visionatlas_register_architectures(self, registrar: Registrar) -> None:
        for task, builder in [("batch", _Pooled), ("listed", _PerImage), ("free", _Pooled)]:
            registrar.add_architecture(
                ArchitectureSpec(
                    task=task,
                    name="toy",
                    builder=lambda config, num_classes, b=builder: b(num_classes),
                    default_num_classes=2,
                )
            )


@pytest.fixture
def catalog() -> Iterator[Catalog]:
    catalog = Catalog(builtins=False, entry_points=False, plugins=[_InputsPlugin()])
    with use_catalog(catalog):
        yield catalog


def _with_bad_pixels(images: Tensor) -> Tensor:
    images = images.clone()
    images[1, 0, 0, 0] = float("nan")
    images[1, 2, 3, 3] = float("nan")
    images[3, 1, 2, 2] = float("inf")
    images[3, 1, 2, 3] = float("-inf")
    return images


# -- the cheap checks: type, shape, dtype -----------------------------------------------------
BAD_BATCHES: list[tuple[str, Any, list[str]]] = [
    ("grey", torch.rand(2, 1, 8, 8), ["1 channel", "(2, 1, 8, 8)", "expand(-1, 3, -1, -1)"]),
    ("rgba", torch.rand(2, 4, 8, 8), ["4 channels", "images[:, :3]"]),
    ("uint8", torch.zeros(2, 3, 8, 8, dtype=torch.uint8), ["dtype torch.uint8", "float() / 255"]),
    ("one image", torch.rand(3, 8, 8), ["shape (3, 8, 8)", "images.unsqueeze(0)"]),
    ("channels last", torch.rand(2, 8, 8, 3), ["8 channels", "permute(0, 3, 1, 2)"]),
    ("a list", [torch.rand(3, 8, 8)], ["got list", "torch.stack(images)"]),
]


@pytest.mark.parametrize(("case", "images", "found"), BAD_BATCHES, ids=[c for c, *_ in BAD_BATCHES])
def test_image_batch_models_say_what_was_wrong_and_what_is_accepted(
    catalog: Catalog, case: str, images: Any, found: list[str]
) -> None:
    model = va.create_model("batch", "toy")
    with pytest.raises(va.InvalidInputError) as info:
        model(images)
    message = str(info.value)
    for part in [*found, "batch/toy expects images as a float tensor of shape (N, 3, H, W)"]:
        assert part in message, (part, message)
    # both builtins, so except clauses written for torch's or the plugins' errors still work
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, va.VisionAtlasError)


BAD_LISTS: list[tuple[str, Any, str, int | None]] = [
    ("grey", [torch.rand(3, 8, 8), torch.rand(1, 8, 8)], "images[1] has shape (1, 8, 8)", 1),
    ("uint8", [torch.zeros(3, 8, 8, dtype=torch.uint8)], "images[0] has dtype torch.uint8", 0),
    ("not a tensor", [torch.rand(3, 8, 8), "x.png"], "images[1] is a str", 1),
    ("single tensor", torch.rand(3, 8, 8), "wrap a single image in a list", None),
    ("empty", [], "got no images", None),
    ("a path", "image.png", "got str", None),
]


@pytest.mark.parametrize(
    ("case", "images", "found", "index"), BAD_LISTS, ids=[c for c, *_ in BAD_LISTS]
)
def test_image_list_models_name_the_image_at_fault(
    catalog: Catalog, case: str, images: Any, found: str, index: int | None
) -> None:
    model = va.create_model("listed", "toy")
    with pytest.raises(va.InvalidInputError, match=r"list of float \(3, H, W\) tensors") as info:
        model(images)
    assert found in str(info.value)
    assert info.value.index == index


def test_good_inputs_pass_and_a_batch_tensor_is_an_image_list_too(catalog: Catalog) -> None:
    assert va.create_model("batch", "toy")(torch.rand(2, 3, 8, 8)).shape == (2, 2)
    listed = va.create_model("listed", "toy")
    assert len(listed([torch.rand(3, 8, 8), torch.rand(3, 5, 7)])) == 2
    assert len(listed(torch.rand(2, 3, 8, 8))) == 2
    assert len(listed(images=[torch.rand(3, 8, 8)], targets=None)) == 1


def test_images_passed_by_keyword_are_checked(catalog: Catalog) -> None:
    model = va.create_model("batch", "toy")
    with pytest.raises(va.InvalidInputError, match="1 channel"):
        model(images=torch.rand(2, 1, 8, 8))


def test_a_task_that_declares_no_input_kind_gets_no_check(catalog: Catalog) -> None:
    model = va.create_model("free", "toy", check_inputs=True)
    assert va.input_check(model) is None
    model(torch.rand(2, 3, 8, 8))


def test_the_check_is_installed_once_and_described(catalog: Catalog) -> None:
    model = va.create_model("batch", "toy")
    check = va.input_check(model)
    assert isinstance(check, InputCheck)
    assert (check.kind, check.values, check.label) == ("image_batch", False, "batch/toy")
    assert install_input_check(model, "image_batch", values=True) is check
    assert check.values is True
    assert sum(isinstance(h, InputCheck) for h in model._forward_pre_hooks.values()) == 1
    with pytest.raises(ValueError, match="'image_batch', 'image_list'"):
        InputCheck("tensor")
    assert set(INPUT_KINDS) == {"image_batch", "image_list"}


def test_an_unknown_input_kind_is_a_plugin_problem() -> None:
    class Bad:
        @hookimpl
        def visionatlas_register_tasks(self, registrar: Registrar) -> None:
            registrar.add_task(TaskSpec(name="bad", display_name="Bad", input_kind="tensor"))

    catalog = Catalog(builtins=False, entry_points=False, plugins=[Bad()])
    (report,) = catalog.list_plugins()
    assert "input_kind='tensor'" in str(report.problems[0])
    assert "'image_batch', 'image_list'" in str(report.problems[0])


# -- the value check: NaN and infinities ------------------------------------------------------
def test_non_finite_pixels_pass_silently_unless_the_check_is_on(catalog: Catalog) -> None:
    images = _with_bad_pixels(torch.rand(4, 3, 8, 8))
    quiet = va.create_model("batch", "toy")
    assert torch.isnan(quiet(images)[1]).all()  # what happens without the check
    model = va.create_model("batch", "toy", check_inputs=True)
    model(torch.rand(4, 3, 8, 8))
    with pytest.raises(va.NonFiniteInputError) as info:
        model(images)
    err = info.value
    assert err.counts == {1: (2, 0, 0), 3: (0, 1, 1)}
    assert err.index == 1
    message = str(err)
    assert "2 images given to batch/toy hold non-finite pixel values" in message
    assert "images[1] has 2 NaN, 0 +inf and 0 -inf values" in message
    assert "images[3] has 0 NaN, 1 +inf and 1 -inf values" in message
    assert isinstance(err, va.InvalidInputError)


def test_non_finite_pixels_in_an_image_list_are_named(catalog: Catalog) -> None:
    model = va.create_model("listed", "toy", check_inputs=True)
    bad = torch.rand(3, 6, 5)
    bad[0, 0, :3] = float("-inf")
    with pytest.raises(va.NonFiniteInputError, match=r"images\[2\] has 0 NaN, 0 \+inf and 3 -inf"):
        model([torch.rand(3, 8, 8), torch.rand(3, 4, 4), bad])
    with pytest.raises(va.NonFiniteInputError) as info:
        model(_with_bad_pixels(torch.rand(4, 3, 8, 8)))  # a batch tensor
    assert info.value.counts == {1: (2, 0, 0), 3: (0, 1, 1)}


def test_many_bad_images_are_summarized(catalog: Catalog) -> None:
    model = va.create_model("batch", "toy", check_inputs=True)
    with pytest.raises(va.NonFiniteInputError, match="and 3 more images") as info:
        model(torch.full((8, 3, 4, 4), float("nan")))
    assert len(info.value.counts) == 8


def test_the_value_check_switches_per_model_and_per_block(catalog: Catalog) -> None:
    images = _with_bad_pixels(torch.rand(4, 3, 8, 8))
    model = va.create_model("batch", "toy")
    with va.checking_inputs(), pytest.raises(va.NonFiniteInputError):
        model(images)
    model(images)  # off again after the block
    check = va.input_check(model)
    assert check is not None
    check.values = True  # what a training engine does
    with pytest.raises(va.NonFiniteInputError):
        model(images)
    with va.checking_inputs(False):  # a block wins over the model's flag
        model(images)
        with va.checking_inputs(), pytest.raises(va.NonFiniteInputError):
            model(images)


# -- what must keep working: meta shapes, export, copies, the registry's rebuild ----------------
def test_meta_shape_inference_runs_the_cheap_checks_only(catalog: Catalog) -> None:
    model = va.create_model("batch", "toy", check_inputs=True)
    assert va.infer_output_shape(model, (2, 3, 8, 8)) == (2, 2)
    assert "Total parameters" in str(va.summary(model, (2, 3, 8, 8)))
    with pytest.raises(va.InvalidInputError, match="1 channel"):  # not a ShapeInferenceError
        va.infer_output_shape(model, (2, 1, 8, 8))


def test_torch_export_and_tracing_skip_the_value_check(catalog: Catalog) -> None:
    model = va.create_model("batch", "toy", check_inputs=True).eval()
    images = torch.rand(2, 3, 8, 8)
    batch = torch.export.Dim("batch", min=1, max=64)
    with va.checking_inputs():
        program = torch.export.export(model, (images,), dynamic_shapes=({0: batch},))
    torch.testing.assert_close(
        program.module()(torch.ones(5, 3, 8, 8)), model(torch.ones(5, 3, 8, 8))
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = torch.jit.trace(model, (images,))
    # the value check is skipped while tracing, so no data-dependent branch is recorded
    assert not [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    torch.testing.assert_close(traced(images), model(images))


def test_onnx_export_with_the_value_check_on(catalog: Catalog, tmp_path: Path) -> None:
    model = va.create_model("batch", "toy", check_inputs=True).eval()
    with va.checking_inputs():
        result = va.export_onnx(model, tmp_path / "toy.onnx", input_size=8, check=True)
    assert result.path.is_file()
    assert result.max_abs_diff is not None


def test_copies_pickles_and_rebuilds_keep_the_check(catalog: Catalog) -> None:
    model = va.create_model("batch", "toy", check_inputs=True)
    for copied in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        check = va.input_check(copied)
        assert check is not None
        assert check is not va.input_check(model)
        assert check.values is True
        with pytest.raises(va.NonFiniteInputError):
            copied(_with_bad_pixels(torch.rand(4, 3, 8, 8)))
    rebuilt = rebuild_model(model.visionatlas_info, catalog=catalog)
    check = va.input_check(rebuilt)
    assert check is not None
    assert (check.kind, check.values) == ("image_batch", False)
    with pytest.raises(va.InvalidInputError, match="1 channel"):
        rebuilt(torch.rand(2, 1, 8, 8))
