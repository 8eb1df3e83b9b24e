"""Map quality of a served layer: the seam index (straight steps such as mask boundaries) and stability."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

#: Side in cells of the windows the seam index is computed in.
SEAM_WINDOW = 128
#: The percentile over windows the seam index reports.
SEAM_PERCENTILE = 90.0


def window_seam_scores(window: np.ndarray) -> tuple[float, float]:
    """How much one straight boundary stands out in a window: its (column score, row score).

    Column score: for every column boundary the median over rows of the absolute jump across it; the
    largest of those medians divided by the window's mean absolute jump across column boundaries. Row
    score: the same with rows and columns swapped. NaN for a direction without any jump (constant).
    """
    scores = []
    for axis in (1, 0):
        jumps = np.abs(np.diff(window.astype(np.float64), axis=axis))
        mean = jumps.mean()
        scores.append(float(np.median(jumps, axis=1 - axis).max() / mean) if mean > 0 else float("nan"))
    return scores[0], scores[1]


def layer_seam_scores(layer: np.ndarray, window: int = SEAM_WINDOW) -> np.ndarray:
    """The column and row scores, float [n, 2], of every full ``window``-cell tile of ``layer`` with data only.

    Tiles are cut from the top-left corner; tiles with a NaN cell (outside the served area) are left out.
    """
    h, w = layer.shape
    out = [window_seam_scores(tile)
           for r in range(0, h - window + 1, window)
           for c in range(0, w - window + 1, window)
           if np.isfinite(tile := layer[r:r + window, c:c + window]).all()]
    return np.asarray(out, dtype=np.float64).reshape(-1, 2)


def seam_index(layer: np.ndarray, window: int = SEAM_WINDOW, percentile: float = SEAM_PERCENTILE) -> float:
    """The ``percentile`` over windows of the column and row scores (:func:`window_seam_scores`), pooled.

    A straight step line scores high; a natural raster or a smooth density map scores low (the CONUS
    cube's covariates about 2). NaN when no window lies wholly in data.
    """
    scores = layer_seam_scores(layer, window)
    scores = scores[np.isfinite(scores)]
    return float(np.percentile(scores, percentile)) if scores.size else float("nan")


@dataclass(frozen=True)
class Stability:
    """Agreement of two maps over the same cells: Spearman's rank correlation and the 99th percentile of |a - b|."""

    spearman: float
    p99_abs_diff: float
    cells: int


def stability(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> Stability:
    """Compare two layers over ``where`` (default: every cell), leaving out cells where either is NaN."""
    keep = np.isfinite(a) & np.isfinite(b)
    if where is not None:
        keep &= where
    x, y = a[keep].astype(np.float64), b[keep].astype(np.float64)
    if x.size < 2:
        raise ValueError(f"stability needs at least two cells with data in both layers; got {x.size}")
    rx, ry = rankdata(x), rankdata(y)
    rho = float(np.corrcoef(rx, ry)[0, 1])
    return Stability(spearman=rho, p99_abs_diff=float(np.percentile(np.abs(x - y), 99)), cells=int(x.size))
