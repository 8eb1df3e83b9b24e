"""The ensemble's hide masks: rectangles shaped like the training regions, drawn in covering rounds.

A hidden region is what the training masks hide (``model.masking.MaskGenerator.hidden_region``):
rectangles whose sides are drawn from ``masking.region_min_cells`` to ``masking.region_max_cells``,
hiding about ``masking.region_fraction`` of the area, every species hidden inside them.

A *round* cuts the grid into such rectangles: row bands and column bands of random lengths, starting at
a random offset. The tiles are dealt to ``parts = round(1 / region_fraction)`` evaluations so that two
tiles sharing an edge go to different evaluations (tile ``(i, j)`` to evaluation ``(i + j + o) % parts``):
each evaluation hides about ``region_fraction`` of the grid, in rectangles seen against visible
neighbours on every side, and the round hides every cell exactly once. E rounds hide every cell exactly
E times, whatever the grid, so the coverage is guaranteed rather than hoped for.

Each hidden cell's prediction is weighted by a ramp on its distance to the nearest visible cell, so the
edge of a hidden rectangle, where the model sees the records beside it, does not print into the mean.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backend.inference.contract import ModelCard, ModelContractError
from backend.settings import PROJECT_ROOT
from model.config import MaskConfig, load_config

#: The configuration whose masking section describes the training regions of a model that records none.
DEMO_CONFIG = PROJECT_ROOT / "configs" / "demo.yaml"


def training_masking(card: ModelCard, fallback: Path = DEMO_CONFIG) -> MaskConfig:
    """The masking configuration the model was trained with: model.json's ``config.masking``, else ``fallback``'s."""
    recorded = (card.raw.get("config") or {}).get("masking")
    if recorded is None:
        if not fallback.is_file():
            raise ModelContractError(f"{card.folder / 'model.json'} records no config.masking and {fallback} "
                                     "does not exist: the hidden regions of the ensemble are undefined")
        return load_config(fallback).masking
    known = {f.name for f in dataclasses.fields(MaskConfig)}
    unknown = sorted(set(recorded) - known)
    if unknown:
        raise ModelContractError(f"{card.folder / 'model.json'}: config.masking has unknown key(s) {unknown}; "
                                 f"known: {sorted(known)}")
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items()}
    return MaskConfig(**values)


def round_parts(fraction: float) -> int:
    """Evaluations per round: each hides about ``fraction`` of the grid (1 / fraction, rounded, at least 1)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"region_fraction must be in (0, 1]; got {fraction}")
    return max(1, round(1 / fraction))


def band_edges(rng: np.random.Generator, length: int, lo: int, hi: int) -> np.ndarray:
    """Edges of bands of lo..hi cells covering 0..length, the first starting 0..hi-1 cells before 0.

    Returns int64 [n + 1], starting at 0 and ending at ``length``; bands cut by the ends may be shorter.
    """
    if not 1 <= lo <= hi:
        raise ValueError(f"region sides must satisfy 1 <= region_min_cells <= region_max_cells; got {lo}, {hi}")
    start = -int(rng.integers(0, hi))
    sizes = rng.integers(lo, hi + 1, size=-(-(length + hi) // lo) + 1)
    edges = start + np.concatenate(([0], np.cumsum(sizes)))
    inside = edges[(edges > 0) & (edges < length)]
    return np.concatenate(([0], inside, [length])).astype(np.int64)


def _ramp(edges: np.ndarray, taper: int) -> np.ndarray:
    """Per cell along one axis: min(1, (d + 0.5) / taper), d the cells to the nearest inner band edge."""
    length = int(edges[-1])
    pos = np.arange(length)
    band = np.searchsorted(edges, pos, side="right") - 1
    lo, hi = edges[band], edges[band + 1]
    big = np.iinfo(np.int64).max // 2
    before = np.where(lo > 0, pos - lo, big)          # the grid's own border is not a visible edge
    after = np.where(hi < length, hi - 1 - pos, big)
    d = np.minimum(before, after).astype(np.float64)
    if taper <= 0:
        return np.ones(length, dtype=np.float32)
    return np.minimum(1.0, (d + 0.5) / taper).astype(np.float32)


@dataclass(frozen=True)
class CoveringRound:
    """One random cut of the grid into rectangles, dealt to ``parts`` evaluations (each cell to one)."""

    row_edges: np.ndarray  # int64 [nr + 1]
    col_edges: np.ndarray  # int64 [nc + 1]
    parts: int
    offset: int
    #: One random integer per evaluation of the round, for the evaluator to move its window edges by.
    shifts: tuple[int, ...]

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the grid."""
        return int(self.row_edges[-1]), int(self.col_edges[-1])

    def part(self) -> np.ndarray:
        """Which evaluation of the round hides each cell: int [H, W]."""
        rows = np.repeat(np.arange(len(self.row_edges) - 1), np.diff(self.row_edges))
        cols = np.repeat(np.arange(len(self.col_edges) - 1), np.diff(self.col_edges))
        return (rows[:, None] + cols[None, :] + self.offset) % self.parts

    def region(self, k: int) -> np.ndarray:
        """The cells evaluation ``k`` (0..parts-1) of the round hides: bool [H, W]."""
        if not 0 <= k < self.parts:
            raise ValueError(f"evaluation {k} of a round of {self.parts}")
        return self.part() == k

    def weights(self, taper: int) -> np.ndarray:
        """A hidden cell's weight, float32 [H, W] in (0, 1], ramping over ``taper`` cells from a visible neighbour.

        Tiles sharing an edge go to different evaluations, so a cell's nearest visible cell (chessboard
        distance) lies across the nearest inner edge of its own tile; the weight is the same whichever
        evaluation of the round hides the cell. With one part (everything hidden at once) it is 1.
        """
        h, w = self.shape
        if self.parts == 1 or taper <= 0:
            return np.ones((h, w), dtype=np.float32)
        return np.minimum(_ramp(self.row_edges, taper)[:, None], _ramp(self.col_edges, taper)[None, :])


def draw_round(seed: tuple[int, ...], shape: tuple[int, int], masking: MaskConfig) -> CoveringRound:
    """The round drawn from ``seed`` (deterministic): random tile sides and offsets, as ``masking``'s regions."""
    rng = np.random.default_rng(list(seed))
    lo, hi = masking.region_min_cells, max(masking.region_min_cells, masking.region_max_cells)
    parts = round_parts(masking.region_fraction)
    rows = band_edges(rng, shape[0], lo, hi)
    cols = band_edges(rng, shape[1], lo, hi)
    offset = int(rng.integers(0, parts))
    shifts = tuple(int(v) for v in rng.integers(0, 2**31, size=parts))
    return CoveringRound(rows, cols, parts, offset, shifts)


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of the ensemble: evaluation ``k`` of round ``r``."""

    round: int
    k: int
    cover: CoveringRound

    def region(self) -> np.ndarray:
        """The cells it hides, for every species: bool [H, W]."""
        return self.cover.region(self.k)

    @property
    def shift(self) -> int:
        """A random integer of this evaluation for the evaluator to move its window edges by."""
        return self.cover.shifts[self.k]


@dataclass(frozen=True)
class MaskSchedule:
    """E covering rounds of the grid: every cell is hidden in exactly ``rounds`` evaluations.

    ``seed`` is the mask seed (``m3 infer --mask-seed``): round r is drawn from (seed, r).
    """

    shape: tuple[int, int]
    masking: MaskConfig
    rounds: int
    seed: int = 0

    @property
    def parts(self) -> int:
        """Evaluations per round."""
        return round_parts(self.masking.region_fraction)

    def __len__(self) -> int:
        return self.rounds * self.parts

    def round(self, r: int) -> CoveringRound:
        """Round ``r`` (0..rounds-1)."""
        return draw_round((self.seed, r), self.shape, self.masking)

    def __iter__(self) -> Iterator[Evaluation]:
        """The evaluations, round by round (each round drawn once)."""
        for r in range(self.rounds):
            cover = self.round(r)
            for k in range(cover.parts):
                yield Evaluation(r, k, cover)
