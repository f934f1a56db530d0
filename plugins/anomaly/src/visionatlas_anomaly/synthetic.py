"""A deterministic synthetic anomaly benchmark in the MVTec AD folder layout.

Categories are textures (``stripes``, ``weave``, ``grid``) and objects (``disc``, ``nut``)
rendered from coordinates, so that a *distortion* can re-render the pattern under warped
coordinates. Defects: ``scratch`` (thin lines), ``hole`` (dark spots), ``stain``
(translucent colour blobs, some faint) and ``distortion`` (rotated/shifted structure), from
a few pixels to a fifth of the image. A defect only changes pixels inside its mask: the
masks are exact. Every image is a pure function of ``(seed, category, split, index)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "CATEGORIES",
    "DEFECTS",
    "SplitSizes",
    "SyntheticSample",
    "generate_dataset",
    "render_sample",
]

Array = NDArray[np.float64]
Coords = tuple[Array, Array]
Renderer = Callable[[dict[str, Any], Array, Array], Array]

DEFECTS: tuple[str, ...] = ("scratch", "hole", "stain", "distortion")


@dataclass(frozen=True)
class SplitSizes:
    """Images per split and category."""

    train: int = 40
    validation: int = 10
    test_good: int = 16
    test_per_defect: int = 6


@dataclass(frozen=True)
class SyntheticSample:
    image: NDArray[np.uint8]
    """``(H, W, 3)`` RGB."""
    mask: NDArray[np.bool_]
    """``(H, W)``: True on defective pixels (all False for normal images)."""
    defect: str
    """``"good"`` or one of :data:`DEFECTS`."""
    clean: NDArray[np.uint8]
    """The same image without its defect (equal to ``image`` for normal images)."""


# -- categories ---------------------------------------------------------------------------


def _stripes_params(rng: np.random.Generator) -> dict[str, Any]:
    return {
        "angle": np.deg2rad(30.0 + rng.normal(0.0, 2.0)),
        "period": 10.0 + rng.normal(0.0, 0.2),
        "phase": rng.uniform(0.0, 2 * np.pi),
        "gain": 1.0 + rng.normal(0.0, 0.03),
    }


def _stripes(params: dict[str, Any], yy: Array, xx: Array) -> Array:
    u = xx * np.cos(params["angle"]) + yy * np.sin(params["angle"])
    v = 0.5 + 0.5 * np.cos(2 * np.pi * u / params["period"] + params["phase"])
    dark, light = np.array([0.18, 0.24, 0.45]), np.array([0.86, 0.80, 0.60])
    return params["gain"] * (dark + v[..., None] * (light - dark))


def _weave_params(rng: np.random.Generator) -> dict[str, Any]:
    return {"offset": rng.uniform(0.0, 16.0, size=2), "gain": 1.0 + rng.normal(0.0, 0.03)}


def _weave(params: dict[str, Any], yy: Array, xx: Array) -> Array:
    cell = 8.0
    y, x = yy + params["offset"][0], xx + params["offset"][1]
    over = (np.floor(y / cell) + np.floor(x / cell)) % 2 == 0
    across = np.abs(np.sin(np.pi * y / cell)) ** 0.7  # shading of horizontal threads
    down = np.abs(np.sin(np.pi * x / cell)) ** 0.7
    fibre = 0.5 + 0.5 * np.cos(2 * np.pi * (x + y) / 3.0)
    shade = np.where(over, across, down) * (0.85 + 0.15 * fibre)
    base = np.array([0.62, 0.46, 0.30])
    return params["gain"] * (0.25 + 0.75 * shade[..., None]) * base


def _grid_params(rng: np.random.Generator) -> dict[str, Any]:
    return {"offset": rng.uniform(0.0, 16.0, size=2), "gain": 1.0 + rng.normal(0.0, 0.03)}


def _grid(params: dict[str, Any], yy: Array, xx: Array) -> Array:
    spacing = 16.0
    dy = np.abs(((yy + params["offset"][0]) % spacing) - spacing / 2)
    dx = np.abs(((xx + params["offset"][1]) % spacing) - spacing / 2)
    line = np.clip(1.5 - np.minimum(dy, dx), 0.0, 1.0)  # 2-3 px wide lines
    dot = np.clip(3.0 - np.hypot(dy - spacing / 2, dx - spacing / 2), 0.0, 1.0)
    background, ink = np.array([0.82, 0.84, 0.80]), np.array([0.20, 0.30, 0.25])
    v = np.maximum(line, 0.6 * dot)[..., None]
    return params["gain"] * (background + v * (ink - background))


def _object_params(rng: np.random.Generator, size: int) -> dict[str, Any]:
    return {
        "center": size / 2 + rng.uniform(-3.0, 3.0, size=2),
        "angle": rng.uniform(0.0, np.pi / 3),
        "gain": 1.0 + rng.normal(0.0, 0.03),
        "radius": 0.3 * size,
    }


def _disc(params: dict[str, Any], yy: Array, xx: Array) -> Array:
    cy, cx = params["center"]
    r = np.hypot(yy - cy, xx - cx)
    radius = params["radius"]
    inside = np.clip(radius - r + 0.5, 0.0, 1.0)[..., None]
    shading = 0.75 + 0.25 * ((xx - cx) - (yy - cy)) / (2 * radius)
    groove = np.clip(1.5 - np.abs(r - 0.55 * radius), 0.0, 1.0)
    hole = np.clip(0.18 * radius - r + 0.5, 0.0, 1.0)
    metal = np.array([0.72, 0.72, 0.76]) * np.clip(shading, 0.4, 1.1)[..., None]
    metal = metal * (1.0 - 0.6 * groove[..., None])
    metal = metal * (1.0 - hole[..., None]) + hole[..., None] * np.array([0.08, 0.08, 0.1])
    background = np.array([0.16, 0.17, 0.20])
    return params["gain"] * (background + inside * (metal - background))


def _nut(params: dict[str, Any], yy: Array, xx: Array) -> Array:
    cy, cx = params["center"]
    y, x = yy - cy, xx - cx
    theta = np.arctan2(y, x) - params["angle"]
    r = np.hypot(y, x)
    radius = params["radius"] * 1.15
    sector = np.mod(theta, np.pi / 3) - np.pi / 6
    hex_edge = radius * np.cos(np.pi / 6) / np.cos(sector)  # distance to the hexagon edge
    body = np.clip(hex_edge - r + 0.5, 0.0, 1.0)
    hole = np.clip(0.38 * radius - r + 0.5, 0.0, 1.0)
    chamfer = np.clip((r - 0.8 * hex_edge) / (0.2 * hex_edge), 0.0, 1.0)
    light = 0.8 + 0.2 * np.cos(theta + params["angle"] - np.pi / 4)
    brass = np.array([0.78, 0.62, 0.30]) * (light * (1.0 - 0.3 * chamfer))[..., None]
    thread = 0.85 + 0.15 * np.cos(2 * np.pi * r / 3.0)
    near_hole = np.clip(0.5 * radius - r, 0.0, 1.0)[..., None]
    brass = brass * (1.0 - near_hole * (1.0 - thread[..., None]))
    background = np.array([0.22, 0.24, 0.27])
    mix = (body * (1.0 - hole))[..., None]
    return params["gain"] * (background + mix * (brass - background))


@dataclass(frozen=True)
class _Category:
    kind: str  # "texture" or "object"
    params: Callable[[np.random.Generator, int], dict[str, Any]]
    render: Renderer


CATEGORIES: dict[str, _Category] = {
    "stripes": _Category("texture", lambda rng, size: _stripes_params(rng), _stripes),
    "weave": _Category("texture", lambda rng, size: _weave_params(rng), _weave),
    "grid": _Category("texture", lambda rng, size: _grid_params(rng), _grid),
    "disc": _Category("object", _object_params, _disc),
    "nut": _Category("object", _object_params, _nut),
}
"""Every category the generator knows."""

NOISE_STD = 0.015


# -- defects ------------------------------------------------------------------------------


def _defect_center(
    rng: np.random.Generator, category: _Category, params: dict[str, Any], size: int
) -> tuple[float, float]:
    if category.kind == "texture":
        return tuple(rng.uniform(0.15 * size, 0.85 * size, size=2))
    cy, cx = params["center"]
    angle = rng.uniform(0.0, 2 * np.pi)
    dist = rng.uniform(0.35, 0.95) * params["radius"]
    return cy + dist * np.sin(angle), cx + dist * np.cos(angle)


def _ellipse(
    yy: Array, xx: Array, cy: float, cx: float, ry: float, rx: float, angle: float
) -> NDArray[np.bool_]:
    y, x = yy - cy, xx - cx
    u = x * np.cos(angle) + y * np.sin(angle)
    v = -x * np.sin(angle) + y * np.cos(angle)
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def _scratch(
    rng: np.random.Generator, yy: Array, xx: Array, center: tuple[float, float], image: Array
) -> tuple[NDArray[np.bool_], Array]:
    length = rng.uniform(12.0, 50.0)
    angle = rng.uniform(0.0, np.pi)
    width = rng.choice([1.2, 1.8, 2.6])
    cy, cx = center
    dy, dx = np.sin(angle) * length / 2, np.cos(angle) * length / 2
    ay, ax = cy - dy, cx - dx
    t = np.clip(((yy - ay) * 2 * dy + (xx - ax) * 2 * dx) / (length**2), 0.0, 1.0)
    dist = np.hypot(yy - (ay + t * 2 * dy), xx - (ax + t * 2 * dx))
    mask = dist <= width / 2
    target = 0.97 if rng.random() < 0.5 else 0.03
    alpha = rng.uniform(0.3, 0.8)
    return mask, image * (1 - alpha) + target * alpha


def _hole(
    rng: np.random.Generator, yy: Array, xx: Array, center: tuple[float, float], image: Array
) -> tuple[NDArray[np.bool_], Array]:
    radius = rng.uniform(2.0, 10.0)
    mask = np.hypot(yy - center[0], xx - center[1]) <= radius
    dark = np.array([0.05, 0.04, 0.04]) + rng.normal(0.0, 0.01, size=image.shape)
    return mask, np.broadcast_to(dark, image.shape)


def _stain(
    rng: np.random.Generator, yy: Array, xx: Array, center: tuple[float, float], image: Array
) -> tuple[NDArray[np.bool_], Array]:
    scale = rng.uniform(5.0, 18.0)
    mask = np.zeros(yy.shape, dtype=bool)
    for _ in range(3):
        oy, ox = rng.normal(0.0, 0.4 * scale, size=2)
        ry, rx = rng.uniform(0.5, 1.0, size=2) * scale
        mask |= _ellipse(yy, xx, center[0] + oy, center[1] + ox, ry, rx, rng.uniform(0, np.pi))
    palette = np.array([[0.55, 0.25, 0.10], [0.25, 0.55, 0.20], [0.20, 0.30, 0.75]])
    color = palette[rng.integers(len(palette))]
    alpha = rng.uniform(0.2, 0.6)  # the faint ones are hard to see
    return mask, image * (1 - alpha) + color * alpha


def _distortion(
    rng: np.random.Generator,
    yy: Array,
    xx: Array,
    center: tuple[float, float],
    render: Callable[[Array, Array], Array],
) -> tuple[NDArray[np.bool_], Array]:
    ry, rx = rng.uniform(6.0, 18.0, size=2)
    mask = _ellipse(yy, xx, center[0], center[1], ry, rx, rng.uniform(0, np.pi))
    angle = rng.choice([-1.0, 1.0]) * rng.uniform(np.deg2rad(25.0), np.deg2rad(70.0))
    shift = rng.uniform(2.0, 5.0, size=2)
    y, x = yy - center[0], xx - center[1]
    wy = center[0] + y * np.cos(angle) - x * np.sin(angle) + shift[0]
    wx = center[1] + y * np.sin(angle) + x * np.cos(angle) + shift[1]
    return mask, render(wy, wx)


# -- sampling -----------------------------------------------------------------------------


def _rng(seed: int, category: str, split: str, index: int) -> np.random.Generator:
    keys = [seed, *map(ord, category), 0, *map(ord, split), 0, index]
    return np.random.default_rng(np.random.SeedSequence(keys))


def _quantize(image: Array) -> NDArray[np.uint8]:
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def render_sample(
    category: str, split: str, index: int, *, defect: str = "good", size: int = 128, seed: int = 0
) -> SyntheticSample:
    """Render one image (and its mask) of ``category``; a pure function of its arguments."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown synthetic category {category!r}; known: {sorted(CATEGORIES)}")
    if defect != "good" and defect not in DEFECTS:
        raise ValueError(f"unknown defect {defect!r}; known: good, {', '.join(DEFECTS)}")
    if size < 32:
        raise ValueError(f"synthetic images must be at least 32 pixels wide, got {size}")
    spec = CATEGORIES[category]
    rng = _rng(seed, category, f"{split}/{defect}", index)
    params = spec.params(rng, size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    clean_float = spec.render(params, yy, xx)
    noise = rng.normal(0.0, NOISE_STD, size=clean_float.shape)
    clean = _quantize(clean_float + noise)
    if defect == "good":
        return SyntheticSample(clean, np.zeros((size, size), dtype=bool), defect, clean)
    center = _defect_center(rng, spec, params, size)
    base = clean_float + noise
    if defect == "distortion":
        mask, changed = _distortion(
            rng, yy, xx, center, lambda wy, wx: spec.render(params, wy, wx) + noise
        )
    else:
        make = {"scratch": _scratch, "hole": _hole, "stain": _stain}[defect]
        mask, changed = make(rng, yy, xx, center, base)
    defective = np.where(mask[..., None], _quantize(changed), clean)
    return SyntheticSample(defective.astype(np.uint8), mask, defect, clean)


def generate_dataset(
    root: str | Path,
    categories: Sequence[str] | None = None,
    *,
    sizes: SplitSizes | None = None,
    image_size: int = 128,
    seed: int = 0,
) -> Path:
    """Write the benchmark under ``root`` in the MVTec AD layout, plus ``validation/good``.

    ``<category>/train/good``, ``<category>/validation/good``, ``<category>/test/good``,
    ``<category>/test/<defect>`` and ``<category>/ground_truth/<defect>/<name>_mask.png``.
    """
    from PIL import Image

    sizes = sizes or SplitSizes()
    names = list(categories) if categories is not None else list(CATEGORIES)
    root = Path(root)
    for category in names:
        folder = root / category
        plan: list[tuple[str, str, int]] = [("train", "good", sizes.train)]
        plan += [("validation", "good", sizes.validation), ("test", "good", sizes.test_good)]
        plan += [("test", d, sizes.test_per_defect) for d in DEFECTS]
        for split, defect, count in plan:
            out = folder / split / defect
            out.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                sample = render_sample(
                    category, split, index, defect=defect, size=image_size, seed=seed
                )
                Image.fromarray(sample.image).save(out / f"{index:03d}.png")
                if defect != "good":
                    masks = folder / "ground_truth" / defect
                    masks.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(sample.mask.astype(np.uint8) * 255).save(
                        masks / f"{index:03d}_mask.png"
                    )
    return root
