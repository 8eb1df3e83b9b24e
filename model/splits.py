"""Spatial block splits with buffers: train, validation and test blocks that share no neighbouring cells.

Two ways to cut the blocks: :func:`make_block_split` (one seeded train/val/test draw) and the protocol's
:func:`protocol_folds` (a sealed test set, then K folds of the rest, see :func:`fold_split`). Cells coded
UNKNOWN are hidden for every species in every input (a sealed test block, a held-out state): the model
is never shown what is there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

TRAIN, VAL, TEST, BUFFER, CONTEXT, UNKNOWN = 0, 1, 2, 3, 4, 5
SPLIT_CODES = {"train": TRAIN, "val": VAL, "test": TEST}


@dataclass
class BlockSplit:
    """Each grid cell's split: train/val/test, a buffer between splits, context (no coverage) or unknown."""

    block_cells: int
    block_split: np.ndarray  # int8 (n_block_rows, n_block_cols): TRAIN/VAL/TEST, CONTEXT or UNKNOWN
    cell_split: np.ndarray  # int8 (H, W)

    def blocks(self, code: int) -> list[tuple[int, int]]:
        """Block (row, col) indices of one split, in row-major order."""
        rows, cols = np.nonzero(self.block_split == code)
        return list(zip(rows.tolist(), cols.tolist(), strict=True))

    def block_cells_of(self, code: int) -> np.ndarray:
        """(H, W) bool: every cell of the blocks with this block code (buffers included)."""
        h, w = self.cell_split.shape
        b = self.block_cells
        grown = np.repeat(np.repeat(self.block_split == code, b, axis=0), b, axis=1)
        return np.ascontiguousarray(grown[:h, :w])


def _eligible_blocks(coverage: np.ndarray, block_cells: int, min_block_coverage: float) -> tuple[np.ndarray, int, int]:
    """Flat indices of blocks with some coverage (at least ``min_block_coverage``), and the block grid shape."""
    h, w = coverage.shape
    nby, nbx = -(-h // block_cells), -(-w // block_cells)
    padded = np.zeros((nby * block_cells, nbx * block_cells), dtype=np.float32)
    padded[:h, :w] = coverage
    share = padded.reshape(nby, block_cells, nbx, block_cells).mean(axis=(1, 3))
    return np.flatnonzero((share > 0) & (share >= min_block_coverage)), nby, nbx


def split_from_blocks(block_split: np.ndarray, shape: tuple[int, int], block_cells: int,
                      buffer_cells: int) -> BlockSplit:
    """Cells from block codes, with buffers carved where train, validation and test blocks meet.

    Cells of TRAIN/VAL/TEST within ``buffer_cells`` of a cell of another split (or of an UNKNOWN block)
    become BUFFER, so no neighbouring cells leak between splits. CONTEXT and UNKNOWN cells keep their code.
    """
    h, w = shape
    cells = np.repeat(np.repeat(block_split, block_cells, axis=0), block_cells, axis=1)[:h, :w].copy()
    if buffer_cells > 0:
        size = 2 * buffer_cells + 1
        near = np.zeros((h, w), dtype=bool)
        split_cells = np.isin(cells, (TRAIN, VAL, TEST, UNKNOWN))
        for code in (TRAIN, VAL, TEST):
            other = split_cells & (cells != code)
            grown = ndimage.maximum_filter(other.astype(np.uint8), size=size, mode="constant") > 0
            near |= (cells == code) & grown
        cells[near] = BUFFER
    return BlockSplit(block_cells=block_cells, block_split=block_split, cell_split=cells)


def make_block_split(coverage: np.ndarray, block_cells: int, buffer_cells: int,
                     fractions: tuple[float, float, float], seed: int, min_block_coverage: float = 0.0) -> BlockSplit:
    """Assign covered blocks at random (seeded) to train/val/test and carve buffers at split borders.

    Blocks whose covered share is below ``min_block_coverage`` (or zero) are context: their cells
    are visible inputs but never targets.
    """
    eligible, nby, nbx = _eligible_blocks(coverage, block_cells, min_block_coverage)
    rng = np.random.default_rng(seed)
    order = rng.permutation(eligible)
    n_train = int(round(fractions[0] * len(order)))
    n_val = int(round(fractions[1] * len(order)))
    block_split = np.full(nby * nbx, CONTEXT, dtype=np.int8)
    block_split[order[:n_train]] = TRAIN
    block_split[order[n_train:n_train + n_val]] = VAL
    block_split[order[n_train + n_val:]] = TEST
    return split_from_blocks(block_split.reshape(nby, nbx), coverage.shape, block_cells, buffer_cells)


@dataclass(frozen=True)
class ProtocolFolds:
    """The protocol's blocks: a sealed test set and K folds of the remaining covered blocks.

    ``fold`` is an int8 (n_block_rows, n_block_cols) array: -1 for blocks outside the protocol
    (no coverage), -2 for sealed test blocks, else the fold 0..K-1.
    """

    block_cells: int
    buffer_cells: int
    shape: tuple[int, int]
    fold: np.ndarray
    n_folds: int

    SEALED = -2
    OUTSIDE = -1

    def sealed_cells(self) -> np.ndarray:
        """(H, W) bool: every cell of a sealed test block."""
        b = self.block_cells
        grown = np.repeat(np.repeat(self.fold == self.SEALED, b, axis=0), b, axis=1)
        return np.ascontiguousarray(grown[: self.shape[0], : self.shape[1]])


def protocol_folds(coverage: np.ndarray, block_cells: int, buffer_cells: int, min_block_coverage: float,
                   test_fraction: float, test_seed: int, n_folds: int) -> ProtocolFolds:
    """Seal ``test_fraction`` of the covered blocks (drawn with ``test_seed``), deal the rest into K folds.

    The folds are dealt round-robin over a second seeded permutation, so their sizes differ by at most one.
    """
    if n_folds < 2:
        raise ValueError(f"protocol.folds must be at least 2; got {n_folds}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"protocol.test_fraction must be in (0, 1); got {test_fraction}")
    eligible, nby, nbx = _eligible_blocks(coverage, block_cells, min_block_coverage)
    rng = np.random.default_rng(test_seed)
    order = rng.permutation(eligible)
    n_test = int(round(test_fraction * len(order)))
    if len(order) - n_test < n_folds:
        raise ValueError(f"{len(order)} covered blocks are too few for a sealed test and {n_folds} folds")
    fold = np.full(nby * nbx, ProtocolFolds.OUTSIDE, dtype=np.int8)
    fold[order[:n_test]] = ProtocolFolds.SEALED
    rest = rng.permutation(order[n_test:])
    fold[rest] = np.arange(len(rest)) % n_folds
    return ProtocolFolds(block_cells, buffer_cells, coverage.shape, fold.reshape(nby, nbx), n_folds)


def fold_split(folds: ProtocolFolds, val_fold: int | None, seal: bool = True) -> BlockSplit:
    """The split of one cross-validation fold: fold ``val_fold`` validates, the other folds train.

    ``val_fold`` None trains on every fold (the final model). With ``seal`` the test blocks are UNKNOWN
    (hidden in every input; the caller also removes their labels, see ``model.protocol.sealed_view``);
    without it they are TEST (only ``m3 evaluate --test`` opens them).
    """
    codes = np.full(folds.fold.shape, CONTEXT, dtype=np.int8)
    codes[folds.fold >= 0] = TRAIN
    if val_fold is not None:
        if not 0 <= val_fold < folds.n_folds:
            raise ValueError(f"fold {val_fold} out of range 0..{folds.n_folds - 1}")
        codes[folds.fold == val_fold] = VAL
    codes[folds.fold == ProtocolFolds.SEALED] = UNKNOWN if seal else TEST
    return split_from_blocks(codes, folds.shape, folds.block_cells, folds.buffer_cells)
