"""The MVTec AD layout reader on folders the tests write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from anomaly_helpers import png_header_bomb
from PIL import Image

from visionatlas_anomaly.data import (
    DatasetLayoutError,
    ImageTooLargeError,
    load_images,
    read_category,
)


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _write_category(root: Path, mask_size: int = 16) -> Path:
    rng = np.random.default_rng(0)
    for i in range(3):
        _png(root / "train" / "good" / f"{i:03d}.png", rng.integers(0, 255, (16, 16, 3), np.uint8))
    _png(root / "test" / "good" / "000.png", rng.integers(0, 255, (16, 16, 3), np.uint8))
    _png(root / "test" / "crack" / "000.png", rng.integers(0, 255, (16, 16, 3), np.uint8))
    mask = np.zeros((mask_size, mask_size), np.uint8)
    mask[2:5, 3:7] = 255
    _png(root / "ground_truth" / "crack" / "000_mask.png", mask)
    return root


def test_reads_train_test_masks_and_labels(tmp_path: Path) -> None:
    data = read_category(_write_category(tmp_path / "widget"))
    assert data.name == "widget"
    assert data.train.shape == (3, 3, 16, 16)
    assert data.train.dtype.is_floating_point
    assert data.train.min() >= 0
    assert data.train.max() <= 1
    assert data.validation is None
    assert data.defects == ["crack", "good"]
    assert data.labels.tolist() == [1, 0]
    assert data.masks.shape == (2, 16, 16)
    assert int(data.masks[0].sum()) == 12
    assert not data.masks[1].any()


def test_resizes_images_and_masks(tmp_path: Path) -> None:
    data = read_category(_write_category(tmp_path / "widget"), image_size=8)
    assert data.test.shape == (2, 3, 8, 8)
    assert data.masks.shape == (2, 8, 8)
    assert data.masks[0].any()


def test_validation_folder_is_read(tmp_path: Path) -> None:
    root = _write_category(tmp_path / "widget")
    _png(root / "validation" / "good" / "000.png", np.zeros((16, 16, 3), np.uint8))
    assert read_category(root).validation.shape == (1, 3, 16, 16)  # type: ignore[union-attr]


def test_empty_train_folder(tmp_path: Path) -> None:
    (tmp_path / "empty" / "train" / "good").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match="holds no images"):
        read_category(tmp_path / "empty")
    with pytest.raises(DatasetLayoutError, match="no train/good folder"):
        read_category(tmp_path)


def test_mask_size_mismatch(tmp_path: Path) -> None:
    root = _write_category(tmp_path / "widget", mask_size=12)
    with pytest.raises(DatasetLayoutError, match="masks must match their images"):
        read_category(root)


def test_missing_mask(tmp_path: Path) -> None:
    root = _write_category(tmp_path / "widget")
    (root / "ground_truth" / "crack" / "000_mask.png").unlink()
    with pytest.raises(DatasetLayoutError, match="has no mask"):
        read_category(root)


# -- decompression bombs (issue 11: a traceback, or a multi-GB allocation) -----------------------
@pytest.mark.parametrize(
    ("width", "height"),
    [(100_000, 100_000), (10_000, 10_000)],
    ids=["over-twice-the-limit", "over-the-limit"],  # PIL raises / PIL only warns
)
def test_decompression_bomb_header_is_refused_before_decoding(
    tmp_path: Path, width: int, height: int
) -> None:
    bomb = png_header_bomb(tmp_path / "bomb.png", width, height)
    assert bomb.stat().st_size < 200
    with pytest.raises(ImageTooLargeError, match="pixel limit") as caught:
        load_images([bomb])
    message = str(caught.value)
    assert f"declares {width * height:,} pixels" in message
    assert str(bomb) in message
    assert f"{Image.MAX_IMAGE_PIXELS:,}" in message
    assert "\n" not in message
    assert caught.value.limit == Image.MAX_IMAGE_PIXELS
    assert isinstance(caught.value, DatasetLayoutError)


def test_a_real_image_over_a_lowered_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "flat.png"
    _png(path, np.full((64, 64, 3), 128, np.uint8))  # 4,096 pixels
    assert load_images([path]).shape == (1, 3, 64, 64)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3_000)  # PIL warns below 6,000
    with pytest.raises(ImageTooLargeError, match="3,000-pixel limit"):
        load_images([path])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # and raises above 2,000
    with pytest.raises(ImageTooLargeError, match="1,000-pixel limit"):
        load_images([path])


def test_bombs_in_masks_and_test_folders_are_refused(tmp_path: Path) -> None:
    root = _write_category(tmp_path / "widget")
    png_header_bomb(root / "ground_truth" / "crack" / "000_mask.png", 100_000, 100_000)
    with pytest.raises(ImageTooLargeError, match=r"000_mask\.png"):
        read_category(root)
    _png(root / "ground_truth" / "crack" / "000_mask.png", np.zeros((16, 16), np.uint8))
    png_header_bomb(root / "test" / "good" / "001.png", 100_000, 100_000)
    with pytest.raises(ImageTooLargeError, match=r"good/001\.png"):
        read_category(root)


def test_unreadable_and_truncated_files_stay_layout_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(DatasetLayoutError, match=r"cannot read image .*junk\.png"):
        load_images([junk])
    truncated = png_header_bomb(tmp_path / "short.png", 64, 64)  # declares more than it holds
    with pytest.raises(DatasetLayoutError, match=r"cannot read image .*short\.png"):
        load_images([truncated])
