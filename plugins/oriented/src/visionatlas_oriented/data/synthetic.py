"""A deterministic synthetic oriented-detection set, in DOTA layout.

Bars (thin rectangles), elongated ellipses and arrows (a thin shaft and a pointed head: the
classes differ in shape, not colour) at every angle and many scales (about a third small,
8-16 px across) on the detection plugin's textured backgrounds; some lie side by side,
touching, as parked cars and moored ships do. Later shapes may cover part of earlier ones:
an object's label is the min-area rotated rectangle of its visible pixels, written as 4
corners, and objects mostly hidden are left out. Image sides are 128-256 px; a few images
have no object. The same seed writes the same bytes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from visionatlas_detection.data.synthetic import textured_background

__all__ = ["CLASSES", "min_area_rectangle", "shape_polygon", "write_synthetic_dota"]

CLASSES = ("bar", "ellipse", "arrow")
_ASPECT = {"bar": (2.5, 6.0), "ellipse": (1.8, 3.5), "arrow": (2.5, 5.0)}
"""Long side over short side of each class."""
_SMALL = (8.0, 16.0)
"""Short side (pixels) of the small objects."""
_SMALL_SHARE = 0.35
_TOUCHING_SHARE = 0.3
_MAX_OVERLAP = 0.2
"""Share of a new shape's pixels that may fall on shapes drawn before it."""
_MIN_VISIBLE = 0.5
"""Share of its pixels an object must keep visible after later shapes (else dropped)."""
_MARGIN = 2.0
_HEADER = "imagesource:synthetic\ngsd:null\n"


def shape_polygon(
    kind: str, cx: float, cy: float, length: float, width: float, angle: float
) -> np.ndarray:
    """``(N, 2)`` outline of a ``kind`` (one of :data:`CLASSES`): ``length`` along ``angle``
    (radians, x right, y down), ``width`` across, centred on ``(cx, cy)``."""
    half_l, half_w = length / 2, width / 2
    if kind == "bar":
        local = np.array([(-half_l, -half_w), (half_l, -half_w), (half_l, half_w),
                          (-half_l, half_w)])  # fmt: skip
    elif kind == "ellipse":
        t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        local = np.stack([half_l * np.cos(t), half_w * np.sin(t)], axis=1)
    elif kind == "arrow":  # fletched: as wide at the tail as at the head, so that the
        # min-area rectangle lies along the shaft (a plain arrow's may tilt by 10 degrees)
        head, tail = min(0.35 * length, 1.2 * width), min(0.25 * length, width)
        neck, shaft, feather = half_l - head, 0.45 * half_w, tail - half_l
        local = np.array([
            (-half_l, -half_w), (feather, -shaft), (neck, -shaft), (neck, -half_w),
            (half_l, 0.0), (neck, half_w), (neck, shaft), (feather, shaft), (-half_l, half_w),
            (feather - tail / 2, 0.0),
        ])  # fmt: skip
    else:
        raise ValueError(f"unknown shape {kind!r}; the shapes are {', '.join(CLASSES)}")
    c, s = math.cos(angle), math.sin(angle)
    return local @ np.array([[c, s], [-s, c]]) + (cx, cy)


def _turn(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    """Twice the signed area of ``o, a, b``: positive for a left turn (y up)."""
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _hull(points: np.ndarray) -> np.ndarray:
    """Convex hull of ``(N, 2)`` points (Andrew's monotone chain; exact for integers)."""
    unique: list[tuple[float, float]] = [(p[0], p[1]) for p in np.unique(points, axis=0).tolist()]
    if len(unique) < 3:
        return np.array(unique, dtype=np.float64)

    def chain(sequence: list[tuple[float, float]]) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        for p in sequence:
            while len(out) >= 2 and _turn(out[-2], out[-1], p) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = chain(unique), chain(unique[::-1])
    return np.array(lower[:-1] + upper[:-1], dtype=np.float64)


def _pixel_corners(mask: np.ndarray) -> np.ndarray:
    """Corners of the leftmost and rightmost pixel of each row of ``mask`` (pixel ``(r, c)``
    covers ``[c, c + 1] x [r, r + 1]``): their hull is the hull of all the pixels."""
    rows = np.flatnonzero(mask.any(axis=1))
    first = mask[rows].argmax(axis=1)
    last = mask.shape[1] - mask[rows, ::-1].argmax(axis=1)
    xs = np.concatenate([first, first, last, last])
    ys = np.concatenate([rows, rows + 1, rows, rows + 1])
    return np.stack([xs, ys], axis=1)


def min_area_rectangle(
    points: np.ndarray, angles: np.ndarray | None = None
) -> tuple[float, float, float, float, float]:
    """``(cx, cy, w, h, angle)`` (``w`` along ``angle``) of the smallest rectangle holding
    ``points`` ``(N, 2)``; ``angles``: the directions to try (default: the hull's edges,
    among which the minimum always is)."""
    if angles is None:
        edges = np.roll(points, -1, axis=0) - points
        angles = np.arctan2(edges[:, 1], edges[:, 0])
    c, s = np.cos(angles), np.sin(angles)
    u = points[:, :1] * c + points[:, 1:] * s  # (N, A): along each direction
    v = points[:, 1:] * c - points[:, :1] * s  # across
    sides_u, sides_v = u.max(0) - u.min(0), v.max(0) - v.min(0)
    k = int(np.argmin(sides_u * sides_v))
    mid_u, mid_v = (u[:, k].max() + u[:, k].min()) / 2, (v[:, k].max() + v[:, k].min()) / 2
    cx, cy = mid_u * c[k] - mid_v * s[k], mid_u * s[k] + mid_v * c[k]
    return float(cx), float(cy), float(sides_u[k]), float(sides_v[k]), float(angles[k])


def _label(mask: np.ndarray, angle: float, width: int, height: int) -> np.ndarray:
    """4 corners of the visible pixels' min-area rectangle; one aligned with the shape
    instead if that one would reach outside the image (possible for a partly hidden one)."""
    import torch

    from visionatlas_oriented.boxes import boxes_to_corners, normalize_boxes

    hull = _hull(_pixel_corners(mask))
    for angles in (None, np.array([angle])):
        box = torch.tensor([min_area_rectangle(hull, angles)], dtype=torch.float64)
        corners = boxes_to_corners(normalize_boxes(box))[0].numpy()
        inside = (corners >= 0).all() and (corners <= (width, height)).all()
        if inside:
            break
    return np.clip(corners, 0, (width, height))


def _place(
    rng: np.random.Generator,
    previous: tuple[float, float, float, float] | None,
    length: float,
    thickness: float,
    width: int,
    height: int,
) -> tuple[float, float, float]:
    """A centre and angle: beside ``previous`` (``cx, cy, thickness, angle``), touching and
    parallel, when drawn so and it fits; anywhere inside the image otherwise."""
    angle = rng.uniform(0, 2 * math.pi)
    if previous is not None and rng.random() < _TOUCHING_SHARE:
        px, py, p_thick, p_angle = previous
        side = 1 if rng.random() < 0.5 else -1
        gap = (p_thick + thickness) / 2 + rng.uniform(0, 1)
        slide = rng.uniform(-0.2, 0.2) * length
        c, s = math.cos(p_angle), math.sin(p_angle)
        cx, cy = px - side * gap * s + slide * c, py + side * gap * c + slide * s
        angle = p_angle + (math.pi if rng.random() < 0.5 else 0.0)
    else:
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    c, s = abs(math.cos(angle)), abs(math.sin(angle))
    reach_x = length / 2 * c + thickness / 2 * s + _MARGIN
    reach_y = length / 2 * s + thickness / 2 * c + _MARGIN
    if not (reach_x <= cx <= width - reach_x and reach_y <= cy <= height - reach_y):
        cx, cy = rng.uniform(reach_x, width - reach_x), rng.uniform(reach_y, height - reach_y)
    return cx, cy, angle


def _image(rng: np.random.Generator, name: str, images: Path, labels: Path) -> None:
    from PIL import Image, ImageDraw

    height, width = (int(v) for v in rng.integers(128, 257, 2))
    canvas = Image.fromarray(textured_background(rng, height, width).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    owners = np.zeros((height, width), dtype=np.int32)  # which object each pixel shows
    count = 0 if rng.random() < 0.05 else int(rng.integers(1, 11))
    side = min(width, height)
    drawn: list[tuple[str, float, int]] = []  # kind, angle, pixels drawn
    previous: tuple[float, float, float, float] | None = None
    for _ in range(count):
        kind = CLASSES[int(rng.integers(len(CLASSES)))]
        if rng.random() < _SMALL_SHARE:
            thickness = rng.uniform(*_SMALL)
        else:
            thickness = rng.uniform(_SMALL[1], max(_SMALL[1] + 1, 0.2 * side))
        length = min(thickness * rng.uniform(*_ASPECT[kind]), 0.85 * side)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        for _attempt in range(8):
            cx, cy, angle = _place(rng, previous, length, thickness, width, height)
            outline = shape_polygon(kind, cx, cy, length, thickness, angle)
            points = [(float(x), float(y)) for x, y in outline]
            shape = Image.new("L", (width, height), 0)
            ImageDraw.Draw(shape).polygon(points, fill=1)
            mask = np.asarray(shape, dtype=bool)
            pixels = int(mask.sum())
            if pixels and (owners[mask] > 0).sum() <= _MAX_OVERLAP * pixels:
                break
        else:
            continue  # no free spot for it: leave it out
        draw.polygon(points, fill=colour)
        drawn.append((kind, angle, pixels))
        owners[mask] = len(drawn)
        previous = (cx, cy, thickness, angle)
    lines = []
    for number, (kind, angle, pixels) in enumerate(drawn, start=1):
        visible = owners == number
        if visible.sum() < _MIN_VISIBLE * pixels:
            continue
        corners = _label(visible, angle, width, height)
        lines.append(" ".join(f"{v:.2f}" for v in corners.reshape(-1)) + f" {kind} 0\n")
    canvas.save(images / f"{name}.png")
    (labels / f"{name}.txt").write_text(_HEADER + "".join(lines), encoding="utf-8")


def write_synthetic_dota(
    root: str | Path, *, train: int = 320, val: int = 60, seed: int = 0
) -> Path:
    """Write ``root/{train,val}/{images,labelTxt}`` and ``root/classes.txt``; return ``root``."""
    base = Path(root)
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val)):
        images, labels = base / split / "images", base / split / "labelTxt"
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            _image(rng, f"{index:05d}", images, labels)
    (base / "classes.txt").write_text("".join(f"{c}\n" for c in CLASSES), encoding="utf-8")
    return base
