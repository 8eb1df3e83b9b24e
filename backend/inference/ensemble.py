"""The M3 ensemble: E covering rounds of hidden regions; tapered mean and std over the evaluations that hid a cell."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from backend.inference.masks import MaskSchedule

log = logging.getLogger(__name__)

#: progress(done evaluations, total evaluations)
Progress = Callable[[int, int], None]
#: evaluate(hidden [S, H, W] bool, shift) -> probabilities [S, H, W]; ``shift`` is a random integer of the
#: evaluation by which a sliding-window evaluator moves its window edges (MapEvaluator). With several
#: members, evaluate(hidden, shift, member) also names the trained network (training seed) to use.
Evaluate = Callable[..., np.ndarray]

#: Cells over which a hidden cell's weight ramps up from the edge of its region (see masks.CoveringRound.weights).
DEFAULT_TAPER_CELLS = 8


@dataclass
class EnsembleResult:
    """Per species and cell: weighted mean and std of the probability over the evaluations that hid the cell.

    Every evaluation hides all species in its regions, so ``count`` (how many evaluations hid a cell) is
    the same for every species. ``std`` is NaN where fewer than two evaluations hid the cell.
    """

    species: tuple[str, ...]
    mean: np.ndarray   # float32 [S, H, W]
    std: np.ndarray    # float32 [S, H, W]
    count: np.ndarray  # uint16 [H, W]
    evaluations: int


def run_ensemble(
    evaluate: Evaluate,
    species: tuple[str, ...],
    schedule: MaskSchedule,
    taper: int = DEFAULT_TAPER_CELLS,
    progress: Progress | None = None,
    threads: int | None = None,
    members: int = 1,
) -> EnsembleResult:
    """Evaluate every evaluation of ``schedule`` and reduce them to a weighted mean and std per cell-species.

    A hidden cell's prediction is weighted by its round's taper (``taper`` cells from the region's edge),
    so the boundaries of the hidden rectangles do not show in the mean; each evaluation also passes its
    own random shift to ``evaluate``, so the edges of sliding windows do not lie on the same rows each time.
    With ``members`` > 1 (a model of several training seeds), round r's evaluations use member r mod
    ``members``: every cell is hidden in each member's rounds alike, and the std spans seeds and masks.

    Running sums in float32 (probabilities lie in 0..1, so the variance is well conditioned), updated with
    dense in-place arithmetic: a few [S, H, W] arrays of memory. Each evaluation's sums are added by a
    thread pool in row blocks while the next evaluation runs.
    """
    n_sp, shape, total = len(species), schedule.shape, len(schedule)
    workers = threads or min(8, os.cpu_count() or 1)
    sums = WeightedSums(n_sp, shape, workers)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="m3-sums") as pool, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="m3-sums-driver") as driver:
        pending: Future[None] | None = None
        for done, (region, taper_weights, shift, r) in enumerate(hidden_regions(schedule, taper), start=1):
            hide = np.broadcast_to(region, (n_sp, *shape))
            prob = evaluate(hide, shift, r % members) if members > 1 else evaluate(hide, shift)
            if pending is not None:
                pending.result()
            weight = np.where(region, taper_weights, np.float32(0))
            pending = driver.submit(sums.add, pool, region, weight, prob)
            if progress:
                progress(done, total)
        if pending is not None:
            pending.result()
    if sums.count.min() < schedule.rounds:  # each round covers the grid: a gap is a bug, not bad luck
        raise RuntimeError(f"{int((sums.count < schedule.rounds).sum())} cells hidden fewer than "
                           f"{schedule.rounds} times")
    mean, std = sums.mean_std()
    log.info("ensemble: %d evaluations in %d rounds, every cell hidden %d times", total, schedule.rounds,
             int(sums.count.min()))
    return EnsembleResult(species=species, mean=mean, std=std, count=sums.count, evaluations=total)


def fill_never_visible(result: EnsembleResult, evaluate: Evaluate, never_visible: np.ndarray,
                       members: int = 1) -> int:
    """Replace the values of cells hidden in every evaluation by each member's unmasked evaluation; in place.

    A cell that is read as unknown for every species (unsurveyed ground without any record) is hidden in every
    evaluation whatever the masks, and the masks only hide records around it, which is less than the map
    knows. Its prospectivity becomes the mean over the members of one evaluation with nothing hidden but the
    unknown cells (the leave-one-state-out setting the protocol scores and calibrates), its uncertainty their
    spread (NaN for one member), and its count grows by the members' evaluations, which hide it too. The
    result no longer depends on the mask draw there. Returns the evaluations run.
    """
    if not never_visible.any():
        return 0
    n_sp, shape = result.mean.shape[0], result.mean.shape[1:]
    nothing = np.zeros((n_sp, *shape), dtype=bool)
    cells = np.nonzero(never_visible)
    acc = np.zeros((n_sp, cells[0].size), dtype=np.float64)
    acc2 = np.zeros_like(acc)
    for m in range(members):
        prob = evaluate(nothing, 0, m) if members > 1 else evaluate(nothing, 0)
        p = prob[:, cells[0], cells[1]].astype(np.float64)
        acc += p
        acc2 += p * p
    mean = acc / members
    result.mean[:, cells[0], cells[1]] = mean
    result.std[:, cells[0], cells[1]] = (np.sqrt(np.maximum(acc2 / members - mean * mean, 0)) if members > 1
                                         else np.nan)
    result.count[never_visible] += members
    result.evaluations += members
    log.info("%d never-visible cells: the mean of %d unmasked evaluation(s)", cells[0].size, members)
    return members


def hidden_regions(schedule: MaskSchedule, taper: int) -> Iterator[tuple[np.ndarray, np.ndarray, int, int]]:
    """(hidden region [H, W] bool, its round's taper weights [H, W], shift, round) of each evaluation, in order."""
    for r in range(schedule.rounds):
        cover = schedule.round(r)
        part = cover.part()
        taper_weights = cover.weights(taper)
        for k in range(cover.parts):
            yield part == k, taper_weights, cover.shifts[k], r


class WeightedSums:
    """Per cell-species running sums of w·p and w·p² (float32), per cell the sum of w and the evaluation count.

    Sums are added in row blocks, one per worker of a thread pool; :meth:`mean_std` reduces them in place.
    """

    def __init__(self, n_species: int, shape: tuple[int, int], workers: int) -> None:
        self.acc = np.zeros((n_species, *shape), dtype=np.float32)
        self.acc2 = np.zeros((n_species, *shape), dtype=np.float32)
        self.wsum = np.zeros(shape, dtype=np.float32)
        self.count = np.zeros(shape, dtype=np.uint16)
        self.scratch = np.empty(shape, dtype=np.float32)
        step = max(1, -(-shape[0] // workers))
        self.blocks = [(r, min(r + step, shape[0])) for r in range(0, shape[0], step)]

    def add(self, pool: Executor, region: np.ndarray, weight: np.ndarray, prob: np.ndarray) -> None:
        """Add one evaluation (``weight`` is 0 outside ``region``), a row block per task of ``pool``."""
        for f in [pool.submit(self.add_rows, region, weight, prob, r0, r1) for r0, r1 in self.blocks]:
            f.result()

    def add_rows(self, region: np.ndarray, weight: np.ndarray, prob: np.ndarray, r0: int, r1: int) -> None:
        """Add one evaluation to the sums of the cells it hid, rows r0..r1."""
        sc = self.scratch[r0:r1]
        w = weight[r0:r1]
        self.count[r0:r1] += region[r0:r1]
        self.wsum[r0:r1] += w
        for s in range(len(self.acc)):
            p = prob[s, r0:r1]
            np.multiply(p, w, out=sc)
            self.acc[s, r0:r1] += sc
            np.multiply(sc, p, out=sc)
            self.acc2[s, r0:r1] += sc

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """(weighted mean, weighted std), computed in place of the sums; std is NaN where fewer than two hid."""
        mean = np.divide(self.acc, self.wsum, out=self.acc)  # in place: these arrays are [S, H, W] each
        var = np.divide(self.acc2, self.wsum, out=self.acc2)
        for s in range(len(mean)):
            np.multiply(mean[s], mean[s], out=self.scratch)
            var[s] -= self.scratch
        std = np.sqrt(np.maximum(var, 0, out=var), out=var)
        std[:, self.count < 2] = np.nan
        return mean, std


def discrepancy(mean: np.ndarray, labels: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """Prospectivity where no record of the species exists, inside coverage only (NaN elsewhere)."""
    out = np.where((labels == 0) & coverage[None], mean, np.nan)
    return out.astype(np.float32)
