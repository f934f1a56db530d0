"""visionatlas.training.images: safe opening, scanning, transforms, splits, atomic writes."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionatlas import DatasetError, ImageReadError, ImageTooLargeError, SkippedFile
from visionatlas.training.images import (
    MAX_SKIP_WARNINGS,
    ImageFiles,
    SkippedImageWarning,
    builtin_name,
    check_image,
    dataset_cache_dir,
    image_transform,
    list_images,
    open_image,
    scan_images,
    stratified_split,
    written_atomically,
)


def _png(path: Path, size: tuple[int, int] = (12, 10), value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, dtype=np.uint8)).save(path)
    return path


def _truncated(path: Path, fmt: str) -> Path:
    """A real image file cut in half (the decoder runs out of data)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_open_image_refuses_decompression_bombs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = _png(tmp_path / "big.png", size=(40, 30))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # 1,200 pixels: PIL only warns
    too_large = pytest.raises(ImageTooLargeError, match=r"big\.png.*1,200 pixels.*1,000-pixel")
    with too_large, open_image(image):
        pass
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # over twice the limit: PIL raises
    with pytest.raises(ImageTooLargeError) as caught:
        check_image(image)
    assert caught.value.path == image
    assert caught.value.limit == 500
    assert isinstance(caught.value, ImageReadError)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_check_image_finds_truncated_files(tmp_path: Path, fmt: str) -> None:
    bad = _truncated(tmp_path / f"cut.{fmt.lower()}", fmt)
    with pytest.raises(ImageReadError, match=rf"cannot read image .*cut\.{fmt.lower()}"):
        check_image(bad)
    check_image(_png(tmp_path / "fine.png"))


def test_scan_images_skips_with_a_warning_or_refuses_when_strict(tmp_path: Path) -> None:
    good = _png(tmp_path / "a.png")
    junk = tmp_path / "b.png"
    junk.write_bytes(b"not an image")
    with pytest.warns(SkippedImageWarning, match=r"skipping unreadable image .*b\.png"):
        kept, skipped = scan_images([good, junk])
    assert kept == [good]
    assert skipped == [SkippedFile(path=junk, reason=skipped[0].reason)]
    assert "cannot identify image file" in skipped[0].reason
    with pytest.raises(ImageReadError, match=r"b\.png"):
        scan_images([good, junk], strict=True)


def test_many_skipped_images_are_counted_after_the_first_warnings(tmp_path: Path) -> None:
    junk = []
    for i in range(MAX_SKIP_WARNINGS + 3):
        junk.append(tmp_path / f"{i:02d}.png")
        junk[-1].write_bytes(b"junk")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept, skipped = scan_images(junk)
    assert kept == []
    assert len(skipped) == MAX_SKIP_WARNINGS + 3
    messages = [str(w.message) for w in caught if w.category is SkippedImageWarning]
    assert len(messages) == MAX_SKIP_WARNINGS + 1
    assert messages[-1].startswith(
        f"skipping 3 more unreadable images ({MAX_SKIP_WARNINGS + 3} in all"
    )


def test_list_images_is_sorted_recursive_and_ignores_hidden_and_other_files(
    tmp_path: Path,
) -> None:
    _png(tmp_path / "b.PNG")
    _png(tmp_path / "sub" / "a.jpg")
    _png(tmp_path / ".hidden" / "c.png")
    _png(tmp_path / ".d.png")
    (tmp_path / "notes.txt").write_text("x")
    assert list_images(tmp_path) == [tmp_path / "b.PNG", tmp_path / "sub" / "a.jpg"]
    assert list_images(tmp_path, recursive=False) == [tmp_path / "b.PNG"]


def test_image_files_reads_rgb_and_applies_the_transform(tmp_path: Path) -> None:
    gray = tmp_path / "gray.png"
    Image.fromarray(np.full((10, 14), 255, dtype=np.uint8)).save(gray)  # mode L
    dataset = ImageFiles([gray], [7], image_transform((8, 8), train=False))
    image, target = dataset[0]
    assert len(dataset) == 1
    assert target == 7
    assert image.shape == (3, 8, 8)
    assert image.dtype == torch.float32
    expected = (1.0 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(image[:, 4, 4], expected)
    gray.unlink()
    with pytest.raises(ImageReadError, match=r"gray\.png"):
        dataset[0]
    with pytest.raises(ValueError, match="2 paths but 1 targets"):
        ImageFiles([gray, gray], [1])


@pytest.mark.parametrize("augment", ["default", "light", "none"])
def test_training_presets_give_the_input_size(tmp_path: Path, augment: str) -> None:
    image = Image.open(_png(tmp_path / "wide.png", size=(40, 20)))
    torch.manual_seed(0)
    out = image_transform((16, 24), train=True, augment=augment)(image)
    assert out.shape == (3, 16, 24)
    assert out.dtype == torch.float32


def test_image_transform_rejects_unknown_presets_and_sizes() -> None:
    with pytest.raises(ValueError, match="augment='flip' is not a preset; accepted: default"):
        image_transform((8, 8), train=True, augment="flip")
    with pytest.raises(ValueError, match=r"input_size must be \(height, width\)"):
        image_transform((8, 0), train=False)


def test_stratified_split_is_seeded_and_keeps_every_class() -> None:
    groups = ["a"] * 10 + ["b"] * 5 + ["c"]
    train, val = stratified_split(groups, 0.2, seed=3)
    assert sorted(train + val) == list(range(16))
    assert [groups[i] for i in val].count("a") == 2
    assert [groups[i] for i in val].count("b") == 1
    assert 15 in train  # a single "c" stays in training
    assert stratified_split(groups, 0.2, seed=3) == (train, val)
    assert stratified_split(groups, 0.2, seed=4) != (train, val)
    with pytest.raises(ValueError, match="val_fraction must be between 0 and 1"):
        stratified_split(groups, 1.0, seed=0)


def test_builtin_name_parses_and_suggests() -> None:
    available = {"digits": "handwritten digits"}
    assert builtin_name("data/folder", available, "classification") is None
    assert builtin_name("builtin:digits", available, "classification") == "digits"
    with pytest.raises(DatasetError, match=r"did you mean builtin:digits\? \(available"):
        builtin_name("builtin:digit", available, "classification")


def test_dataset_cache_dir_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert dataset_cache_dir(tmp_path) == tmp_path
    monkeypatch.setenv("VISIONATLAS_CACHE_DIR", str(tmp_path / "env"))
    assert dataset_cache_dir(None) == tmp_path / "env"
    monkeypatch.delenv("VISIONATLAS_CACHE_DIR")
    assert dataset_cache_dir(None).parts[-2:] == ("visionatlas", "datasets")


def _complete(folder: Path) -> bool:
    return (folder / "done").is_file()


def test_written_atomically_leaves_nothing_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "cache" / "set"

    def failing(folder: Path) -> None:
        (folder / "half").write_text("x")
        raise KeyboardInterrupt  # a kill in the middle of writing

    with pytest.raises(KeyboardInterrupt):
        written_atomically(target, failing, complete=_complete)
    assert list((tmp_path / "cache").iterdir()) == []

    calls: list[Path] = []

    def writer(folder: Path) -> None:
        calls.append(folder)
        (folder / "done").write_text("ok")

    assert written_atomically(target, writer, complete=_complete) == target
    assert written_atomically(target, writer, complete=_complete) == target
    assert len(calls) == 1
    assert (target / "done").is_file()
    assert sorted(p.name for p in target.parent.iterdir()) == ["set"]


def test_written_atomically_replaces_an_incomplete_folder(tmp_path: Path) -> None:
    target = tmp_path / "set"
    target.mkdir()
    (target / "stray").write_text("edited by hand")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        written_atomically(target, lambda f: (f / "done").write_text("ok"), complete=_complete)
    assert sorted(p.name for p in target.iterdir()) == ["done"]
    assert [p.name for p in tmp_path.iterdir()] == ["set"]
