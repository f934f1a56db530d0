"""Border-binned score statistics, learning-rate schedules and crop-size defaults."""

from __future__ import annotations

import pytest
import torch
from anomaly_helpers import textures

from visionatlas_anomaly.calibration import MIN_BIN_SAMPLES, ScaleStatistics, border_bins
from visionatlas_anomaly.config import UninformedStudentsConfig
from visionatlas_anomaly.model import UninformedStudents
from visionatlas_anomaly.training import _schedule


def test_border_bins_by_distance_to_the_nearest_borders() -> None:
    bins = border_bins(5, 7, 2, torch.device("cpu")).tolist()
    # bin = by * 3 + bx with by, bx the distances to the nearest row/column border, capped at 2
    assert bins == [
        [0, 1, 2, 2, 2, 1, 0],
        [3, 4, 5, 5, 5, 4, 3],
        [6, 7, 8, 8, 8, 7, 6],
        [3, 4, 5, 5, 5, 4, 3],
        [0, 1, 2, 2, 2, 1, 0],
    ]


def test_moments_per_bin_match_torch_and_sparse_bins_fall_back() -> None:
    stats = ScaleStatistics(patch_size=5, descriptor_dim=4)  # margin 2: 9 bins
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(2, 9, 9, generator=generator)
    values[:, :2, :] += 5.0  # the top rows are shifted, as border errors are
    sums = stats.accumulator(torch.device("cpu"))
    stats.add(sums, values[:1])
    stats.add(sums, values[1:])
    moments = stats.moments(sums)
    bins = border_bins(9, 9, 2, torch.device("cpu")).expand_as(values)
    counts = torch.bincount(bins.flatten(), minlength=9)
    for index in range(9):
        if counts[index] >= MIN_BIN_SAMPLES:
            selected = values[bins == index]
            expected = torch.stack([selected.mean(), selected.std()])
        else:
            expected = torch.stack([values.mean(), values.std()])
        torch.testing.assert_close(moments[:, index], expected, atol=1e-5, rtol=1e-5)
    assert counts.min() < MIN_BIN_SAMPLES <= counts.max()  # both branches are exercised


def test_standardize_uses_each_pixels_bin() -> None:
    stats = ScaleStatistics(patch_size=5, descriptor_dim=4)
    stats.error_moments[0] = torch.arange(9.0).view(3, 3)
    stats.error_moments[1] = 2.0
    bins = border_bins(6, 8, 2, torch.device("cpu")).float()
    standardized = stats.standardize(bins[None] + 4.0, stats.error_moments)
    torch.testing.assert_close(standardized, torch.full((1, 6, 8), 2.0))


def test_normal_maps_are_standardized_in_every_border_bin() -> None:
    options = {
        "patch_sizes": (17,),
        "width": 0.25,
        "num_students": 1,
        "teacher_steps": 0,
        "student_steps": 5,
        "crop_size": 16,
        "teacher_distillation": "off",
        "progress": False,
    }
    detector = UninformedStudents(UninformedStudentsConfig.model_validate(options))
    validation = textures(6, seed=3)
    detector.fit(textures(4, seed=2), validation)
    maps = detector.anomaly_maps(validation)
    bins = border_bins(32, 32, 8, torch.device("cpu")).expand_as(maps)
    for index in (0, 4, 40, 80):  # a corner, near a corner, an edge, the interior
        values = maps[bins == index].double()
        assert abs(float(values.mean())) < 1e-3
        assert abs(float(values.std()) - 1.0) < 1e-3


@pytest.mark.parametrize(("kind", "final"), [("cosine", 0.0), ("constant", 0.1)])
def test_learning_rate_schedules(kind: str, final: float) -> None:
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    config = UninformedStudentsConfig(lr_schedule=kind)  # type: ignore[arg-type]
    scheduler = _schedule(optimizer, 10, config)
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(final, abs=1e-12)


def test_crop_sizes_follow_the_image_size_unless_set() -> None:
    config = UninformedStudentsConfig()
    assert (config.student_crop(128), config.teacher_crop(128)) == (32, 16)
    assert (config.student_crop(256), config.teacher_crop(256)) == (64, 32)
    assert (config.student_crop(64), config.teacher_crop(64)) == (32, 16)
    fixed = UninformedStudentsConfig(crop_size=20, teacher_crop_size=12)
    assert (fixed.student_crop(256), fixed.teacher_crop(256)) == (20, 12)
