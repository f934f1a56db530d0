"""COCO JSON annotations (boxes; polygons and RLE masks), indexed with pycocotools.

Category ids need not be contiguous: they map, in id order, to labels ``1..K`` (0 is the
background) and the category names, in that order, are the labels kept with the model.
Images without annotations are kept as negatives; ``iscrowd`` objects are kept for
evaluation but left out of training targets. Everything is checked before training starts:
a box outside its image or with zero area, a category id not in ``categories``, an RLE mask
whose size differs from its image and an image the file names but the folder lacks are
refused, naming the file, the annotation id and what is accepted.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from visionatlas.errors import DatasetError
from visionatlas_detection.data.samples import Annotation, Box, ImageRecord

__all__ = ["BOX_SLACK", "read_coco"]

BOX_SLACK = 1.0
"""How far (pixels) a box may reach past its image's edge (rounding in exported files); it
is clipped to the image. Anything further is an error."""

_SHOWN = 5


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DatasetError(f"COCO annotation file {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path} is not valid JSON: {err}") from err
    missing = [k for k in ("images", "annotations", "categories") if k not in data]
    if not isinstance(data, dict) or missing:
        raise DatasetError(
            f"{path} is not a COCO annotation file: it lacks {missing or 'a top-level object'} "
            "(accepted: an object with 'images', 'annotations' and 'categories' lists)"
        )
    for key, needed in (
        ("images", ("id", "file_name", "width", "height")),
        ("annotations", ("id", "image_id", "category_id", "bbox")),
        ("categories", ("id", "name")),
    ):
        for entry in data[key]:
            lacking = [k for k in needed if k not in entry]
            if lacking:
                raise DatasetError(
                    f"{path}: an entry of '{key}' (id {entry.get('id')!r}) lacks {lacking}; "
                    f"each needs {list(needed)}"
                )
    return data


def _index(data: dict[str, Any]) -> Any:
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


def _label_map(
    categories: Sequence[Mapping[str, Any]], labels: Sequence[str], path: Path
) -> tuple[dict[int, int], list[str]]:
    ordered = sorted(categories, key=lambda c: c["id"])
    names = [str(c["name"]) for c in ordered]
    if not labels:
        return {int(c["id"]): i + 1 for i, c in enumerate(ordered)}, names
    unknown = [n for n in names if n not in labels]
    if unknown:
        raise DatasetError(
            f"{path} has categories {unknown} that the model does not know; its classes are "
            f"{list(labels)}"
        )
    return {int(c["id"]): list(labels).index(str(c["name"])) + 1 for c in ordered}, list(labels)


def _box(ann: Mapping[str, Any], width: int, height: int, where: str) -> Box:
    bbox = ann["bbox"]
    if not (
        isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)
    ):
        raise DatasetError(f"{where}: bbox {bbox!r} is not [x, y, width, height] in pixels")
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        raise DatasetError(
            f"{where}: bbox {bbox} has zero area (width and height must be > 0 pixels)"
        )
    if x < -BOX_SLACK or y < -BOX_SLACK or x + w > width + BOX_SLACK or y + h > height + BOX_SLACK:
        raise DatasetError(
            f"{where}: bbox {bbox} (x, y, width, height) reaches outside its "
            f"{width}x{height} image; boxes must lie within the image"
        )
    return (max(x, 0.0), max(y, 0.0), min(x + w, float(width)), min(y + h, float(height)))


def _segmentation(ann: Mapping[str, Any], width: int, height: int, where: str) -> Any:
    seg = ann.get("segmentation")
    if (
        isinstance(seg, list)
        and seg
        and all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 for p in seg)
    ):
        return seg
    if isinstance(seg, dict) and "counts" in seg and "size" in seg:
        if list(seg["size"]) != [height, width]:
            raise DatasetError(
                f"{where}: the RLE mask is {seg['size'][0]}x{seg['size'][1]} (height x width) "
                f"but its image is {height}x{width}; a mask must have its image's size"
            )
        return seg
    raise DatasetError(
        f"{where}: segmentation {str(seg)[:60]!r} is not a mask (accepted: a list of polygons "
        "[x1, y1, x2, y2, ...] of at least 3 points, or an RLE dict with 'counts' and 'size')"
    )


def read_coco(
    annotation_file: str | Path,
    image_dir: str | Path,
    *,
    masks: bool = False,
    labels: Sequence[str] = (),
) -> tuple[list[ImageRecord], list[str]]:
    """The images of a COCO file (in file order) and the class names, labels ``1..K``.

    ``masks=True`` (instance segmentation) requires a mask for every object that is not a
    crowd. ``labels`` (a trained model's classes) maps categories by name instead.
    """
    path, folder = Path(annotation_file), Path(image_dir)
    data = _load(path)
    coco = _index(data)
    label_of, names = _label_map(data["categories"], labels, path)
    missing = [
        img["file_name"] for img in data["images"] if not (folder / img["file_name"]).is_file()
    ]
    if missing:
        more = f" and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else ""
        raise DatasetError(
            f"{path} names images that {folder} lacks: {', '.join(missing[:_SHOWN])}{more}"
        )
    records = []
    for img in data["images"]:
        width, height = int(img["width"]), int(img["height"])
        annotations = []
        for ann in coco.imgToAnns.get(img["id"], []):
            where = f"{path}, annotation id {ann['id']}"
            if ann["category_id"] not in label_of:
                raise DatasetError(
                    f"{where}: category_id {ann['category_id']!r} is not in the file's "
                    f"categories (ids {sorted(label_of)})"
                )
            crowd = bool(ann.get("iscrowd", 0))
            segmentation = _segmentation(ann, width, height, where) if masks and not crowd else None
            annotations.append(
                Annotation(
                    box=_box(ann, width, height, where),
                    label=label_of[ann["category_id"]],
                    annotation_id=ann["id"],
                    segmentation=segmentation,
                    ignored=crowd,
                )
            )
        records.append(
            ImageRecord(
                folder / img["file_name"], width, height, int(img["id"]), tuple(annotations)
            )
        )
    return records, names
