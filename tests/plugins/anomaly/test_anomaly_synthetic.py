"""The synthetic generator: deterministic, exact masks, MVTec layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionatlas_anomaly.synthetic import (
    CATEGORIES,
    DEFECTS,
    SplitSizes,
    generate_dataset,
    render_sample,
)


@pytest.mark.parametrize("category", sorted(CATEGORIES))
def test_deterministic_and_masks_exact(category: str) -> None:
    for index, defect in enumerate(DEFECTS):
        a = render_sample(category, "test", index, defect=defect, size=64)
        b = render_sample(category, "test", index, defect=defect, size=64)
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.mask, b.mask)
        changed = (a.image != a.clean).any(axis=-1)
        assert a.mask.any()
        assert not (changed & ~a.mask).any(), "pixels outside the mask changed"
        assert changed[a.mask].mean() > 0.5, "most mask pixels must differ from the clean image"
    good = render_sample(category, "train", 0, size=64)
    assert not good.mask.any()
    np.testing.assert_array_equal(good.image, good.clean)


def test_samples_differ_by_index_split_and_seed() -> None:
    base = render_sample("stripes", "train", 0, size=64).image
    assert not np.array_equal(base, render_sample("stripes", "train", 1, size=64).image)
    assert not np.array_equal(base, render_sample("stripes", "test", 0, size=64).image)
    assert not np.array_equal(base, render_sample("stripes", "train", 0, size=64, seed=1).image)


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown synthetic category"):
        render_sample("bricks", "train", 0)
    with pytest.raises(ValueError, match="unknown defect"):
        render_sample("stripes", "test", 0, defect="crack")


def test_generate_dataset_writes_mvtec_layout(tmp_path: Path) -> None:
    sizes = SplitSizes(train=2, validation=1, test_good=1, test_per_defect=1)
    root = generate_dataset(tmp_path, ["disc"], sizes=sizes, image_size=48, seed=3)
    folder = root / "disc"
    assert len(list((folder / "train" / "good").glob("*.png"))) == 2
    assert len(list((folder / "validation" / "good").glob("*.png"))) == 1
    for defect in DEFECTS:
        image = folder / "test" / defect / "000.png"
        mask = folder / "ground_truth" / defect / "000_mask.png"
        assert image.is_file()
        assert mask.is_file()
        expected = render_sample("disc", "test", 0, defect=defect, size=48, seed=3)
        np.testing.assert_array_equal(np.asarray(Image.open(image)), expected.image)
        np.testing.assert_array_equal(np.asarray(Image.open(mask)) > 127, expected.mask)
