"""Pascal VOC detection folders: ``Annotations/*.xml`` and ``JPEGImages/``.

VOC boxes are 1-based pixel indexes (``xmin`` .. ``xmax`` inclusive); they become
``x0 = xmin - 1``, ``x1 = xmax`` so that a box covers the same pixels as in COCO.
``difficult`` objects are kept for evaluation and left out of training targets. The class
names are those found, sorted (or a trained model's, given as ``labels``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from visionatlas.errors import DatasetError
from visionatlas_detection.data.samples import Annotation, Box, ImageRecord

__all__ = ["read_voc"]


def _number(node: ET.Element, tag: str, where: str) -> float:
    text = node.findtext(tag)
    try:
        return float(text or "")
    except ValueError as err:
        raise DatasetError(f"{where}: <{tag}> is {text!r}, not a number") from err


def _parse(file: Path, images: Path) -> tuple[Path, int, int, list[tuple[str, Box, bool]]]:
    try:
        root = ET.parse(file).getroot()
    except ET.ParseError as err:
        raise DatasetError(f"{file} is not valid XML: {err}") from err
    name, size = root.findtext("filename"), root.find("size")
    if not name or size is None:
        raise DatasetError(f"{file} lacks <filename> or <size> (a Pascal VOC annotation has both)")
    width, height = int(_number(size, "width", str(file))), int(_number(size, "height", str(file)))
    objects = []
    for index, obj in enumerate(root.iter("object")):
        where = f"{file}, object {index}"
        box = obj.find("bndbox")
        label = (obj.findtext("name") or "").strip()
        if box is None or not label:
            raise DatasetError(f"{where} lacks <name> or <bndbox>")
        x0, y0 = _number(box, "xmin", where) - 1, _number(box, "ymin", where) - 1
        x1, y1 = _number(box, "xmax", where), _number(box, "ymax", where)
        if not (x1 > x0 and y1 > y0):
            raise DatasetError(
                f"{where}: box ({x0 + 1:g}, {y0 + 1:g}, {x1:g}, {y1:g}) has zero area "
                "(xmax must be >= xmin and ymax >= ymin)"
            )
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            raise DatasetError(
                f"{where}: box (xmin {x0 + 1:g}, ymin {y0 + 1:g}, xmax {x1:g}, ymax {y1:g}) "
                f"reaches outside its {width}x{height} image (VOC boxes run from 1 to the size)"
            )
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        objects.append((label, (x0, y0, x1, y1), difficult))
    return images / name, width, height, objects


def read_voc(
    root: str | Path, *, split: str | None = None, labels: Sequence[str] = ()
) -> tuple[list[ImageRecord], list[str]]:
    """The images of a VOC folder (``split``: a list in ``ImageSets/Main/<split>.txt``)."""
    base = Path(root)
    annotations, images = base / "Annotations", base / "JPEGImages"
    if not annotations.is_dir() or not images.is_dir():
        raise DatasetError(
            f"{base} is not a Pascal VOC folder: it needs Annotations/ (XML files) and "
            "JPEGImages/ (the images they name)"
        )
    if split is None:
        files = sorted(annotations.glob("*.xml"))
    else:
        listing = base / "ImageSets" / "Main" / f"{split}.txt"
        if not listing.is_file():
            raise DatasetError(f"split {split!r} needs the list {listing}, which does not exist")
        files = [annotations / f"{line.strip()}.xml" for line in listing.read_text().split()]
    parsed = [_parse(file, images) for file in files]
    missing = [str(p) for p, *_ in parsed if not p.is_file()]
    if missing:
        raise DatasetError(f"the annotations of {base} name images that are missing: {missing[:5]}")
    found = sorted({label for *_, objects in parsed for label, _, _ in objects})
    names = list(labels) or found
    unknown = [label for label in found if label not in names]
    if unknown:
        raise DatasetError(f"{base} has classes {unknown} that the model does not know: {names}")
    records = []
    for image_id, (path, width, height, objects) in enumerate(parsed):
        annotations_ = tuple(
            Annotation(box=box, label=names.index(label) + 1, annotation_id=f"{path.stem}/{i}",
                       ignored=difficult)
            for i, (label, box, difficult) in enumerate(objects)
        )  # fmt: skip
        records.append(ImageRecord(path, width, height, image_id, annotations_))
    return records, names
