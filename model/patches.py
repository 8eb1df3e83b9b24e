"""Training patches over covered train cells and the fixed evaluation windows around val/test blocks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.cube.contract import CubeArrays, InputLayout, assemble_inputs
from model.config import Regime
from model.masking import MaskGenerator, evaluation_masks
from model.splits import BUFFER, TEST, TRAIN, UNKNOWN, VAL, BlockSplit


def _origin(center: int, size: int, extent: int) -> int:
    """Top/left index of a window of ``size`` centred near ``center``, kept inside ``extent``."""
    return int(min(max(center - size // 2, 0), max(extent - size, 0)))


@dataclass
class Batch:
    """One training batch: inputs (N, C, H, W), targets (N, S, H, W), loss mask (N, S, H, W)."""

    x: np.ndarray
    y: np.ndarray
    loss_mask: np.ndarray


class PatchSampler:
    """Patches centred on random covered train cells; non-train cells are hidden, never zeros.

    Only covered train cells are training targets: with ``layout`` reading unsurveyed cells as unknown they
    are hidden in the input too (:func:`backend.cube.contract.fill_species_channels`), but an empty
    unsurveyed cell is never scored as a negative.
    """

    def __init__(self, cube: CubeArrays, split: BlockSplit, masks: MaskGenerator, patch_cells: int,
                 layout: InputLayout | None = None) -> None:
        self.cube, self.split, self.masks, self.size = cube, split, masks, patch_cells
        rows, cols = np.nonzero((split.cell_split == TRAIN) & cube.coverage)
        if rows.size == 0:
            raise ValueError("no covered train cells: check the coverage layer and data.split_fractions")
        self.rows, self.cols = rows, cols
        self.layout = layout or InputLayout.of(cube.species, cube.covariates)

    def patch(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One (x, y, loss_mask) patch with a fresh training mask."""
        h, w = self.cube.shape
        i = int(rng.integers(self.rows.size))
        r0, c0 = _origin(int(self.rows[i]), self.size, h), _origin(int(self.cols[i]), self.size, w)
        win = (slice(r0, r0 + self.size), slice(c0, c0 + self.size))
        view = self.cube.crop(*win)
        labels = view.labels
        cells = self.split.cell_split[win]
        _, hidden = self.masks.sample(rng, cells.shape)
        outside_train = (cells == VAL) | (cells == TEST) | (cells == BUFFER) | (cells == UNKNOWN)
        hidden |= outside_train[None]
        x = assemble_inputs(self.layout, view, hidden)
        loss_mask = hidden & ((cells == TRAIN) & self.cube.coverage[win])[None]
        y = labels.astype(np.float32)
        return x, y, loss_mask.astype(np.float32)

    def batch(self, rng: np.random.Generator, size: int) -> Batch:
        """A batch of patches."""
        parts = [self.patch(rng) for _ in range(size)]
        return Batch(*(np.stack(p) for p in zip(*parts, strict=True)))


@dataclass
class EvalCase:
    """One evaluation input: a window, its hidden mask, and which hidden cells are scored."""

    split: str
    regime: str  # a masking Regime, or the protocol's held-out area
    origin: tuple[int, int]
    hidden: np.ndarray  # (S, H, W) bool
    labels: np.ndarray  # (S, H, W) uint8
    scored: np.ndarray  # (S, H, W) bool: hidden, covered, in this block, of this split
    covered: np.ndarray  # (H, W) bool
    #: the bootstrap's resampling unit of the scored cells (a block), or an (H, W) array of them (states)
    unit: int | np.ndarray = 0


def evaluation_cases(cube: CubeArrays, split: BlockSplit, split_name: str, regime: Regime, margin: int,
                     seed: int, max_windows: int, min_cells: int, masks: MaskGenerator | None = None,
                     region_draws: int = 0) -> list[EvalCase]:
    """The fixed, seeded evaluation cases of one split and regime (same for every model).

    ``region_draws`` > 0 hides random rectangles inside each block (``masks`` draws them) in that many
    region or mixed cases per block instead of the whole block (see :func:`evaluation_masks`). UNKNOWN
    cells of the split are hidden in every case; a case's ``unit`` is its block's flat index.
    """
    codes = {"train": TRAIN, "val": VAL, "test": TEST}
    if split_name not in codes:
        raise ValueError(f"split {split_name!r} is unknown; known: {', '.join(codes)}")
    code = codes[split_name]
    b, (h, w) = split.block_cells, cube.shape
    size = b + 2 * margin
    rng = np.random.default_rng(seed)
    blocks = []
    for by, bx in split.blocks(code):
        core = (split.cell_split[by * b:(by + 1) * b, bx * b:(bx + 1) * b] == code) & \
            cube.coverage[by * b:(by + 1) * b, bx * b:(bx + 1) * b]
        if core.sum() >= min_cells:
            blocks.append((by, bx))
    if len(blocks) > max_windows:
        keep = np.sort(rng.choice(len(blocks), size=max_windows, replace=False))
        blocks = [blocks[i] for i in keep]
    cases = []
    for by, bx in blocks:
        r0 = _origin(by * b + b // 2, size, h)
        c0 = _origin(bx * b + b // 2, size, w)
        win = (slice(r0, r0 + size), slice(c0, c0 + size))
        labels = cube.labels[:, win[0], win[1]]
        cells = split.cell_split[win]
        rr, cc = np.mgrid[r0:r0 + size, c0:c0 + size]
        in_block = (rr // b == by) & (cc // b == bx)
        core = in_block & (cells == code)
        target = core & cube.coverage[win]
        unknown = cells == UNKNOWN
        unit = by * split.block_split.shape[1] + bx
        for hidden, species in evaluation_masks(regime, in_block, len(cube.species), rng, masks, region_draws):
            hidden |= unknown[None]
            scored = np.zeros_like(hidden)
            scored[species] = hidden[species] & target[None]
            cases.append(EvalCase(split_name, regime, (r0, c0), hidden, labels, scored, cube.coverage[win], unit))
    return cases


def case_inputs(cube: CubeArrays, case: EvalCase, layout: InputLayout | None = None) -> np.ndarray:
    """The raw input window (C, H, W) of an evaluation case (for ``layout``, the standard one by default)."""
    (r0, c0), (h, w) = case.origin, case.labels.shape[1:]
    view = cube.crop(slice(r0, r0 + h), slice(c0, c0 + w))
    view.labels = case.labels
    return assemble_inputs(layout or InputLayout.of(cube.species, cube.covariates), view, case.hidden)
