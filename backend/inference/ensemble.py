"""The M3 ensemble: E mask patterns x S seeds, the mean and std over the evaluations that hid a cell."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

#: The mask patterns, cycled over e = 0..E-1: whole species, regions across all species, both.
MASK_PATTERNS = ("species", "regions", "species_in_regions")

#: progress(done evaluations, total evaluations)
Progress = Callable[[int, int], None]
#: evaluate(hidden [S, H, W] bool) -> probabilities [S, H, W]
Evaluate = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SpeciesMask:
    """One evaluation's hide mask: the hidden species, hidden in ``region`` (everywhere when None)."""

    pattern: str
    seed: tuple[int, ...]
    species: np.ndarray        # bool [S]
    region: np.ndarray | None  # bool [H, W] or None for the whole map

    def dense(self, shape: tuple[int, int]) -> np.ndarray:
        """The mask as bool [S, H, W]."""
        hidden = np.zeros((self.species.size, *shape), dtype=bool)
        hidden[self.species] = True if self.region is None else self.region[None]
        return hidden


@dataclass
class EnsembleResult:
    """Per species and cell: mean and std of the probability over evaluations that hid it, and how many."""

    species: tuple[str, ...]
    mean: np.ndarray   # float32 [S, H, W]
    std: np.ndarray    # float32 [S, H, W]
    count: np.ndarray  # uint16 [S, H, W]
    evaluations: int


def _regions(rng: np.random.Generator, shape: tuple[int, int], side: int, fraction: float) -> np.ndarray:
    """Random square regions of ``side`` cells on a randomly offset block grid, each hidden with ``fraction``."""
    h, w = shape
    oy, ox = (int(v) for v in rng.integers(0, side, size=2))
    nby, nbx = -(-(h + oy) // side), -(-(w + ox) // side)
    blocks = rng.random((nby, nbx)) < fraction
    if not blocks.any():
        blocks[rng.integers(0, nby), rng.integers(0, nbx)] = True
    full = np.repeat(np.repeat(blocks, side, axis=0), side, axis=1)
    return full[oy:oy + h, ox:ox + w]


def _species_subset(rng: np.random.Generator, n: int, fraction: float) -> np.ndarray:
    """A random non-empty subset of n species, each chosen with ``fraction``."""
    chosen = rng.random(n) < fraction
    if not chosen.any():
        chosen[rng.integers(0, n)] = True
    return chosen


def draw_mask(pattern: str, seed: tuple[int, ...], n_species: int, shape: tuple[int, int],
              region_cells: int, fraction: float) -> SpeciesMask:
    """The hide mask of one evaluation (deterministic in ``seed``)."""
    rng = np.random.default_rng(list(seed))
    if pattern == "species":
        return SpeciesMask(pattern, seed, _species_subset(rng, n_species, fraction), None)
    if pattern == "regions":
        return SpeciesMask(pattern, seed, np.ones(n_species, dtype=bool), _regions(rng, shape, region_cells, fraction))
    if pattern == "species_in_regions":
        chosen = _species_subset(rng, n_species, fraction)
        return SpeciesMask(pattern, seed, chosen, _regions(rng, shape, region_cells, fraction))
    raise ValueError(f"mask pattern {pattern!r} unknown; known: {', '.join(MASK_PATTERNS)}")


def ensemble_masks(n_masks: int, n_seeds: int, n_species: int, shape: tuple[int, int], region_cells: int,
                   fraction: float, base_seed: int = 0) -> list[tuple[str, tuple[int, ...]]]:
    """The (pattern, seed) of each of the E x S evaluations (masks are drawn lazily, one at a time)."""
    return [(MASK_PATTERNS[e % len(MASK_PATTERNS)], (base_seed, e, s)) for e in range(n_masks) for s in range(n_seeds)]


def run_ensemble(
    evaluate: Evaluate,
    species: tuple[str, ...],
    shape: tuple[int, int],
    n_masks: int,
    n_seeds: int,
    region_cells: int = 96,
    fraction: float = 0.5,
    base_seed: int = 0,
    progress: Progress | None = None,
    threads: int | None = None,
) -> EnsembleResult:
    """Evaluate E x S masks and reduce them; cells no mask hid get one more evaluation hiding everything.

    Running sums in float32 (probabilities lie in 0..1, so the variance is well conditioned), updated
    with dense in-place arithmetic per hidden species: a few [S, H, W] arrays of memory. Each
    evaluation's sums are added by a thread pool in row blocks while the next evaluation runs.
    """
    n_sp = len(species)
    plan = ensemble_masks(n_masks, n_seeds, n_sp, shape, region_cells, fraction, base_seed)
    total = len(plan)
    acc = np.zeros((n_sp, *shape), dtype=np.float32)
    acc2 = np.zeros((n_sp, *shape), dtype=np.float32)
    count = np.zeros((n_sp, *shape), dtype=np.uint16)
    scratch = np.empty(shape, dtype=np.float32)
    workers = threads or min(8, os.cpu_count() or 1)
    step = max(1, -(-shape[0] // workers))
    blocks = [(r, min(r + step, shape[0])) for r in range(0, shape[0], step)]

    def accumulate_rows(mask: SpeciesMask, prob: np.ndarray, r0: int, r1: int) -> None:
        """Add one evaluation to the sums of the species and cells it hid, rows r0..r1."""
        sc = scratch[r0:r1]
        region = None if mask.region is None else mask.region[r0:r1]
        for s in np.flatnonzero(mask.species):
            p = prob[s, r0:r1]
            if region is None:
                acc[s, r0:r1] += p
                np.multiply(p, p, out=sc)
                acc2[s, r0:r1] += sc
                count[s, r0:r1] += 1
            else:
                np.multiply(p, region, out=sc)
                acc[s, r0:r1] += sc
                np.multiply(sc, p, out=sc)
                acc2[s, r0:r1] += sc
                count[s, r0:r1] += region

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="m3-sums") as pool, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="m3-sums-driver") as driver:

        def accumulate(mask: SpeciesMask, prob: np.ndarray) -> None:
            for f in [pool.submit(accumulate_rows, mask, prob, r0, r1) for r0, r1 in blocks]:
                f.result()

        pending: Future[None] | None = None
        for i, (pattern, seed) in enumerate(plan):
            mask = draw_mask(pattern, seed, n_sp, shape, region_cells, fraction)
            prob = evaluate(mask.dense(shape))
            if pending is not None:
                pending.result()
            pending = driver.submit(accumulate, mask, prob)
            if progress:
                progress(i + 1, total)
        if pending is not None:
            pending.result()
    never = count == 0
    evaluations = total
    if never.any():
        log.info("%d cell-species never hidden by the %d masks; one more evaluation hides everything",
                 int(never.sum()), total)
        prob = evaluate(np.ones((n_sp, *shape), dtype=bool))
        np.copyto(acc, prob, where=never)
        np.copyto(acc2, prob * prob, where=never)
        count[never] = 1
        evaluations += 1
    n = count.astype(np.float32)
    mean = np.divide(acc, n, out=acc)              # in place: these arrays are [S, H, W] each
    var = np.divide(acc2, n, out=acc2)
    np.multiply(mean, mean, out=n)
    np.subtract(var, n, out=var)
    std = np.sqrt(np.maximum(var, 0, out=var), out=var)
    return EnsembleResult(species=species, mean=mean, std=std, count=count, evaluations=evaluations)


def discrepancy(mean: np.ndarray, labels: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """Prospectivity where no record of the species exists, inside coverage only (NaN elsewhere)."""
    out = np.where((labels == 0) & coverage[None], mean, np.nan)
    return out.astype(np.float32)
