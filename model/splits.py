"""Spatial block split with buffers: train, validation and test blocks that share no neighbouring cells."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

TRAIN, VAL, TEST, BUFFER, CONTEXT = 0, 1, 2, 3, 4
SPLIT_CODES = {"train": TRAIN, "val": VAL, "test": TEST}


@dataclass
class BlockSplit:
    """Each grid cell's split: train/val/test, a buffer between splits, or context (no coverage)."""

    block_cells: int
    block_split: np.ndarray  # int8 (n_block_rows, n_block_cols): TRAIN/VAL/TEST or CONTEXT
    cell_split: np.ndarray  # int8 (H, W)

    def blocks(self, code: int) -> list[tuple[int, int]]:
        """Block (row, col) indices of one split, in row-major order."""
        rows, cols = np.nonzero(self.block_split == code)
        return list(zip(rows.tolist(), cols.tolist(), strict=True))


def make_block_split(coverage: np.ndarray, block_cells: int, buffer_cells: int,
                     fractions: tuple[float, float, float], seed: int, min_block_coverage: float = 0.0) -> BlockSplit:
    """Assign covered blocks at random (seeded) to train/val/test and carve buffers at split borders.

    Blocks whose covered share is below ``min_block_coverage`` (or zero) are context: their cells
    are visible inputs but never targets. Cells within ``buffer_cells`` of a cell of another split
    become BUFFER on both sides, so no neighbouring cells leak between splits.
    """
    h, w = coverage.shape
    nby, nbx = -(-h // block_cells), -(-w // block_cells)
    padded = np.zeros((nby * block_cells, nbx * block_cells), dtype=np.float32)
    padded[:h, :w] = coverage
    share = padded.reshape(nby, block_cells, nbx, block_cells).mean(axis=(1, 3))
    eligible = np.flatnonzero((share > 0) & (share >= min_block_coverage))
    rng = np.random.default_rng(seed)
    order = rng.permutation(eligible)
    n_train = int(round(fractions[0] * len(order)))
    n_val = int(round(fractions[1] * len(order)))
    block_split = np.full(nby * nbx, CONTEXT, dtype=np.int8)
    block_split[order[:n_train]] = TRAIN
    block_split[order[n_train:n_train + n_val]] = VAL
    block_split[order[n_train + n_val:]] = TEST
    block_split = block_split.reshape(nby, nbx)
    cells = np.repeat(np.repeat(block_split, block_cells, axis=0), block_cells, axis=1)[:h, :w].copy()
    if buffer_cells > 0:
        size = 2 * buffer_cells + 1
        near = np.zeros((h, w), dtype=bool)
        for code in (TRAIN, VAL, TEST):
            other = (cells != code) & (cells != CONTEXT)
            grown = ndimage.maximum_filter(other.astype(np.uint8), size=size, mode="constant") > 0
            near |= (cells == code) & grown
        cells[near] = BUFFER
    return BlockSplit(block_cells=block_cells, block_split=block_split, cell_split=cells)
