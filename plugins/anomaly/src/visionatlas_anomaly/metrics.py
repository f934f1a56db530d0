"""Anomaly detection metrics: image AUROC, pixel AUROC and PRO (MVTec AD definition)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage
from sklearn.metrics import roc_auc_score

__all__ = ["DetectionMetrics", "evaluate", "image_auroc", "pixel_auroc", "pro_score"]

PRO_FPR_LIMIT = 0.3


def _check_labels(labels: NDArray[np.bool_], what: str) -> None:
    if labels.all() or not labels.any():
        raise ValueError(f"{what} needs both normal and anomalous examples")


def image_auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve of image scores (``labels``: 1 for anomalous)."""
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{s.shape[0]} scores but {y.shape[0]} labels")
    _check_labels(y, "image AUROC")
    return float(roc_auc_score(y, s))


def _maps_and_masks(
    maps: ArrayLike, masks: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    m = np.asarray(maps, dtype=np.float64)
    g = np.asarray(masks).astype(bool)
    if m.shape != g.shape or m.ndim != 3:
        raise ValueError(
            f"anomaly maps and masks must both be (N, H, W) of one shape, got {m.shape} and "
            f"{g.shape}"
        )
    return m, g


def pixel_auroc(maps: ArrayLike, masks: ArrayLike) -> float:
    """ROC AUC over all pixels of all images (``masks`` true on anomalous pixels)."""
    m, g = _maps_and_masks(maps, masks)
    _check_labels(g, "pixel AUROC")
    return float(roc_auc_score(g.ravel(), m.ravel()))


def pro_score(maps: ArrayLike, masks: ArrayLike, fpr_limit: float = PRO_FPR_LIMIT) -> float:
    """Normalized area under the per-region-overlap curve up to ``fpr_limit``.

    For a threshold ``t``, the PRO is the mean over every connected component ``C`` of the
    ground truth (8-connectivity, per image) of ``|{map >= t} & C| / |C|``, and the FPR is
    the share of normal pixels (of all images) with ``map >= t``. The curve PRO(FPR) is
    evaluated exactly at every distinct score, integrated with trapezoids from 0 up to
    ``fpr_limit`` (interpolated there) and divided by ``fpr_limit``.
    """
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    m, g = _maps_and_masks(maps, masks)
    _check_labels(g, "PRO")
    structure = np.ones((3, 3), dtype=bool)
    region_ids = np.zeros(g.shape, dtype=np.int64)
    offset = 0
    for i in range(len(g)):
        labeled, count = ndimage.label(g[i], structure=structure)
        region_ids[i] = np.where(labeled > 0, labeled + offset, 0)
        offset += count
    regions = region_ids.ravel()
    scores = m.ravel()
    sizes = np.bincount(regions, minlength=offset + 1).astype(np.float64)
    n_normal = sizes[0]
    # Each normal pixel adds 1 / n_normal to the FPR once the threshold passes below it;
    # each pixel of region r adds 1 / (|r| * number of regions) to the PRO.
    fpr_step = np.where(regions == 0, 1.0 / n_normal, 0.0)
    pro_step = np.where(regions > 0, 1.0 / (sizes[regions] * offset), 0.0)
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    fpr = np.cumsum(fpr_step[order])
    pro = np.cumsum(pro_step[order])
    last_of_tie = np.r_[ranked[1:] != ranked[:-1], True]
    f = np.r_[0.0, fpr[last_of_tie]]
    p = np.r_[0.0, pro[last_of_tie]]
    p_at_limit = float(np.interp(fpr_limit, f, p))
    keep = f < fpr_limit
    f_c = np.r_[f[keep], fpr_limit]
    p_c = np.r_[p[keep], p_at_limit]
    return float(np.trapezoid(p_c, f_c) / fpr_limit)


@dataclass(frozen=True)
class DetectionMetrics:
    image_auroc: float
    pixel_auroc: float
    pro: float

    def as_dict(self) -> dict[str, float]:
        return {"image_auroc": self.image_auroc, "pixel_auroc": self.pixel_auroc, "pro": self.pro}


def evaluate(
    maps: ArrayLike, scores: ArrayLike, masks: ArrayLike, labels: ArrayLike
) -> DetectionMetrics:
    """All three metrics for a test set."""
    return DetectionMetrics(
        image_auroc=image_auroc(scores, labels),
        pixel_auroc=pixel_auroc(maps, masks),
        pro=pro_score(maps, masks),
    )
