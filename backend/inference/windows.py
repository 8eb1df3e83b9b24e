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


def _starts(length: int, size: int, overlap: int) -> tuple[int, ...]:
    """Window starts covering 0..length with the given overlap, the last flush with the end."""
    if length <= size:
        return (0,)
    step = max(1, size - overlap)
    starts = list(range(0, length - size, step))
    starts.append(length - size)
    return tuple(sorted(set(starts)))


def plan_windows(shape: tuple[int, int], size: int, overlap: int, multiple: int = 1) -> WindowPlan:
    """Windows of side ``size`` (rounded to ``multiple``, at most the padded raster) covering ``shape``."""
    height, width = shape
    size = round_up(max(size, multiple), multiple)
    size_r = min(size, round_up(height, multiple))
    size_c = min(size, round_up(width, multiple))
    overlap = min(overlap, size_r // 2, size_c // 2)
    return WindowPlan(size_r, size_c, _starts(height, size_r, overlap), _starts(width, size_c, overlap))


def blend_weights(size_rows: int, size_cols: int, overlap: int) -> np.ndarray:
    """Separable weights that ramp from near 0 to 1 over ``overlap`` cells at each edge (never 0)."""

    def ramp(n: int) -> np.ndarray:
        m = min(overlap, n // 2)
        w = np.ones(n, dtype=np.float32)
        if m > 0:
            edge = (np.arange(m, dtype=np.float32) + 0.5) / m
            w[:m] = edge
            w[n - m:] = edge[::-1]
        return w

    return np.outer(ramp(size_rows), ramp(size_cols))


def sliding_predict(
    predict: Predictor,
    inputs: np.ndarray,
    n_out: int,
    size: int = 512,
    overlap: int = 64,
    multiple: int = 1,
    batch: int = 4,
) -> np.ndarray:
    """Run ``predict`` over overlapping windows of ``inputs`` [C, H, W] and blend into [n_out, H, W].

    Windows that stick out of a raster smaller than one window are zero-padded (the model sees padding
    as "no data"); overlaps are averaged with :func:`blend_weights`, so seams do not show and a
    constant field stays constant.
    """
    channels, height, width = inputs.shape
    plan = plan_windows((height, width), size, overlap, multiple)
    weights = blend_weights(plan.size_rows, plan.size_cols, overlap)
    total = np.zeros((n_out, height, width), dtype=np.float32)
    norm = np.zeros((height, width), dtype=np.float32)
    origins = list(plan)
    for start in range(0, len(origins), batch):
        group = origins[start:start + batch]
        x = np.zeros((len(group), channels, plan.size_rows, plan.size_cols), dtype=np.float32)
        for i, (r, c) in enumerate(group):
            patch = inputs[:, r:r + plan.size_rows, c:c + plan.size_cols]
            x[i, :, :patch.shape[1], :patch.shape[2]] = patch
        y = predict(x)
        for i, (r, c) in enumerate(group):
            h, w = min(plan.size_rows, height - r), min(plan.size_cols, width - c)
            wt = weights[:h, :w]
            total[:, r:r + h, c:c + w] += y[i, :, :h, :w] * wt
            norm[r:r + h, c:c + w] += wt
    return total / norm
