"""Sliding-window inference over a large raster with blended seams (pure numpy)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

#: A model as a function: inputs [N, C, h, w] -> outputs [N, S, h, w].
Predictor = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class WindowPlan:
    """Where the windows of one pass lie: window side, overlap, and the row and column starts."""

    size_rows: int
    size_cols: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """Every (row, col) window origin, row-major."""
        for r in self.rows:
            for c in self.cols:
                yield r, c

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)


def round_up(n: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` at least ``n``."""
    return -(-n // multiple) * multiple


def _starts(length: int, size: int, overlap: int, offset: int = 0) -> tuple[int, ...]:
    """Window starts covering 0..length with at least the given overlap, the first at 0, the last flush with the end.

    The starts between lie ``offset`` (taken modulo the step, size - overlap) after multiples of the step,
    so that a pass can move its inner window edges.
    """
    if length <= size:
        return (0,)
    step = max(1, size - overlap)
    starts = [0, *range(offset % step, length - size, step), length - size]
    return tuple(sorted(set(starts)))


def plan_windows(shape: tuple[int, int], size: int, overlap: int, multiple: int = 1) -> WindowPlan:
    """Windows of side ``size`` (rounded to ``multiple``, at most the padded raster) covering ``shape``."""
    height, width = shape
    size = round_up(max(size, multiple), multiple)
    size_r = min(size, round_up(height, multiple))
    size_c = min(size, round_up(width, multiple))
    overlap = min(overlap, size_r // 2, size_c // 2)
    return WindowPlan(size_r, size_c, _starts(height, size_r, overlap), _starts(width, size_c, overlap))


#: The weight of a cell within the margin of a window edge: not 0, so a cell only one window reaches (at
#: the raster's border) still gets that window's value, but nothing next to a window that reaches it better.
MARGIN_WEIGHT = 1e-6


def blend_weights(size_rows: int, size_cols: int, overlap: int, margin: int = 0) -> np.ndarray:
    """Separable weights of a window's cells for blending overlaps: 1 inside, ramping down at each edge.

    Over the ``overlap`` cells at an edge, the first ``margin`` cells weigh :data:`MARGIN_WEIGHT`, then the
    weight ramps linearly to 1 over ``overlap - 2 * margin`` cells; in an overlap of two windows the two
    ramps sum to 1 and no cell takes more than a trace from within ``margin`` cells of a window's edge,
    where the model's view is cut short. ``margin`` is reduced where the overlap is too short for it.
    """

    def ramp(n: int) -> np.ndarray:
        m = min(overlap, n // 2)
        w = np.ones(n, dtype=np.float32)
        if m > 0:
            cut = min(margin, (m - 1) // 2)
            edge = np.clip((np.arange(m, dtype=np.float32) - cut + 0.5) / (m - 2 * cut), MARGIN_WEIGHT, 1)
            w[:m] = edge
            w[n - m:] = edge[::-1]
        return w

    return np.outer(ramp(size_rows), ramp(size_cols))


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """The [start, stop) runs of True in a 1-D boolean array."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], flags.astype(np.int8), [0]))))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def plan_needed(shape: tuple[int, int], needed: np.ndarray, band_rows: int, max_cells: int, overlap: int,
                multiple: int = 1, offset: int = 0) -> list[tuple[int, int, int, int]]:
    """Windows (row, col, rows, cols) that cover every ``needed`` cell, and little else.

    The raster is cut into overlapping bands of ``band_rows`` rows (the inner band edges moved down by
    ``offset`` modulo the band step, see :func:`_starts`); in each band, every run of columns
    holding a needed cell (widened by ``overlap`` on both sides, nearby runs merged) becomes one window,
    split further when it would exceed ``max_cells``. Over CONUS this evaluates about 30% fewer cells
    than square windows over the whole grid, which spend their corners on sea, Canada and Mexico.
    """
    height, width = shape
    rows = min(round_up(max(band_rows, multiple), multiple), round_up(height, multiple))
    overlap = min(overlap, rows // 2)
    max_cols = max(rows, (max_cells // rows) // multiple * multiple)
    kernel = np.ones(2 * overlap + 1, dtype=np.int32)
    windows = []
    for r in _starts(height, rows, overlap, offset):
        band = needed[r:r + rows].any(axis=0)
        if not band.any():
            continue
        wide = np.asarray(np.convolve(band.astype(np.int32), kernel, mode="same") > 0, dtype=bool)
        for c0, c1 in _runs(wide):
            cols = min(round_up(c1 - c0, multiple), max_cols, round_up(width, multiple))
            for c in _starts(c1 - c0, cols, overlap):
                windows.append((r, max(0, min(c0 + c, width - cols)), rows, cols))
    return windows


def sliding_predict(
    predict: Predictor,
    inputs: np.ndarray,
    n_out: int,
    size: int = 512,
    overlap: int = 64,
    multiple: int = 1,
    batch: int = 4,
    needed: np.ndarray | None = None,
    band_rows: int = 256,
    offset: int = 0,
    margin: int = 0,
) -> np.ndarray:
    """Run ``predict`` over overlapping windows of ``inputs`` [C, H, W] and blend into [n_out, H, W].

    Without ``needed`` square windows of side ``size`` cover the raster; with a boolean ``needed`` [H, W]
    only the windows of :func:`plan_needed` run (bands of ``band_rows`` rows, at most ``size``² cells each,
    their inner edges moved by ``offset``) and cells no window reached are NaN. A model sees the edge of
    its window as the edge of the world, so its output near an inner window edge differs a little from
    what a larger window gives; an ensemble that moves the edges between evaluations (``offset``) averages
    that out instead of printing it along fixed rows, and ``margin`` leaves out (nearly) the cells within
    that many cells of a window's edge where another window reaches them (:func:`blend_weights`). Windows
    that stick out of the raster are zero-padded (the model sees padding as "no data"); overlaps are
    averaged with :func:`blend_weights`, so a constant field stays constant.
    """
    channels, height, width = inputs.shape
    if needed is None:
        plan = plan_windows((height, width), size, overlap, multiple)
        windows = [(r, c, plan.size_rows, plan.size_cols) for r, c in plan]
    else:
        windows = plan_needed((height, width), needed, band_rows, size * size, overlap, multiple, offset)
    total = np.zeros((n_out, height, width), dtype=np.float32)
    norm = np.zeros((height, width), dtype=np.float32)
    weights: dict[tuple[int, int], np.ndarray] = {}
    start = 0
    while start < len(windows):
        shape = windows[start][2:]
        group = [windows[start]]
        while len(group) < batch and start + len(group) < len(windows) and windows[start + len(group)][2:] == shape:
            group.append(windows[start + len(group)])
        start += len(group)
        wt_full = weights.get(shape)
        if wt_full is None:
            wt_full = weights[shape] = blend_weights(shape[0], shape[1], overlap, margin)
        r, c = group[0][:2]
        if len(group) == 1 and r + shape[0] <= height and c + shape[1] <= width:  # one copy, no zero fill first
            x = np.ascontiguousarray(inputs[None, :, r:r + shape[0], c:c + shape[1]], dtype=np.float32)
        else:
            x = np.zeros((len(group), channels, *shape), dtype=np.float32)
            for i, (r, c, _, _) in enumerate(group):
                patch = inputs[:, r:r + shape[0], c:c + shape[1]]
                x[i, :, :patch.shape[1], :patch.shape[2]] = patch
        y = predict(x)
        for i, (r, c, _, _) in enumerate(group):
            h, w = min(shape[0], height - r), min(shape[1], width - c)
            wt = wt_full[:h, :w]
            part = y[i, :, :h, :w]
            np.multiply(part, wt, out=part)
            total[:, r:r + h, c:c + w] += part
            norm[r:r + h, c:c + w] += wt
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.divide(total, norm, out=total)
