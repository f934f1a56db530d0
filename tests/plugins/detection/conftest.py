"""Fixtures of the detection tests: synthetic detection data, a private hub cache, one thread.

Detectors run many small convolutions; with several OpenMP threads on a loaded 2-core
machine they can be an order of magnitude slower than with one, so these tests use one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

Batch = tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache, offline: weights load only from files the test writes."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("VISIONATLAS_OFFLINE", "1")
    return tmp_path


@pytest.fixture
def small() -> dict[str, int]:
    """Options that keep torchvision's transform from upscaling test images to 800 pixels."""
    return {"min_size": 96, "max_size": 128}


@pytest.fixture
def make_batch() -> Callable[..., Batch]:
    """``make_batch(masks=False, seed=0)``: two small images with bright rectangles (labels
    1 to 3) and their targets."""
    return synthetic_batch


def synthetic_batch(masks: bool = False, seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    sizes = [(96, 128), (112, 96)]
    boxes = [[[10, 12, 60, 70], [70, 5, 120, 40]], [[5, 8, 50, 100]]]
    labels = [[1, 2], [3]]
    images, targets = [], []
    for (height, width), image_boxes, image_labels in zip(sizes, boxes, labels, strict=True):
        image = torch.rand(3, height, width, generator=generator) * 0.5
        image_masks = torch.zeros(len(image_boxes), height, width, dtype=torch.uint8)
        for k, (x1, y1, x2, y2) in enumerate(image_boxes):
            image[:, y1:y2, x1:x2] += 0.5
            image_masks[k, y1:y2, x1:x2] = 1
        target = {
            "boxes": torch.tensor(image_boxes, dtype=torch.float32),
            "labels": torch.tensor(image_labels, dtype=torch.int64),
        }
        if masks:
            target["masks"] = image_masks
        images.append(image)
        targets.append(target)
    return images, targets
