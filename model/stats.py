"""Paired bootstrap confidence intervals for comparing methods scored on the same hidden cells.

Every scored cell belongs to a resampling unit (a spatial block, a state). A resample draws as many
units as there are, with replacement, and weights each cell by how often its unit was drawn; the same
draws serve every method (paired), so noise that all methods share cancels in their difference.

Mean AUPRC of a resample is computed from per-unit histograms over the ranks of the positives (ties kept
together), so a thousand resamples of thousands of units cost a few sparse matrix products per species and
method, and each resample's AP is exact. Coarser rank bins (``bins``) are an approximation that biases AP
down where positives share a bin with many negatives: at an AUPRC of a few thousandths over half a million
cells, 2,048 bins can place a whole interval off the point estimate. Success rates
at the top k of the area are :func:`model.metrics.success_rate`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import sparse

from model.metrics import average_precision
from model.patches import EvalCase

_CHUNK = 256  # resamples per block of the sparse products


@dataclass
class UnitScores:
    """One method's scores on the scored cells, per species, with each cell's resampling unit.

    ``scores[s]`` float, ``labels[s]`` 0/1 and ``units[s]`` int (0..n_units-1) are aligned arrays of
    species s; ``unit_ids[u]`` is the caller's id of unit u (a block index, a state code) when known.
    """

    scores: list[np.ndarray]
    labels: list[np.ndarray]
    units: list[np.ndarray]
    n_units: int
    unit_ids: list | None = None

    def __post_init__(self) -> None:
        if not len(self.scores) == len(self.labels) == len(self.units):
            raise ValueError("scores, labels and units need one array per species each")
        for s, (sc, lab, un) in enumerate(zip(self.scores, self.labels, self.units, strict=True)):
            if not sc.shape == lab.shape == un.shape or sc.ndim != 1:
                raise ValueError(f"species {s}: scores, labels and units must be 1-D arrays of one length")
            if un.size and (un.min() < 0 or un.max() >= self.n_units):
                raise ValueError(f"species {s}: unit ids must lie in 0..{self.n_units - 1}")

    @property
    def n_species(self) -> int:
        """Number of species."""
        return len(self.scores)


def unit_scores(cases: Sequence[EvalCase], predictions: Iterable[np.ndarray], units: Sequence[int | np.ndarray],
                n_species: int) -> UnitScores:
    """Gather scored cells of cases with their units; ``units`` has one entry per case.

    An entry is the case's unit id (an int, e.g. its block) or an (H, W) int array of per-cell ids
    (e.g. a state index); cells with a negative id are left out. The distinct ids found are numbered
    0..n_units-1 in sorted order (``unit_ids`` keeps them), so every unit drawn holds cells. Built from
    the same cases and units, two methods' UnitScores are paired.
    """
    parts: list[tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]] = [([], [], []) for _ in range(n_species)]
    for case, pred, unit in zip(cases, predictions, units, strict=True):
        for s in range(n_species):
            m = case.scored[s]
            if not m.any():
                continue
            ids = np.broadcast_to(np.asarray(unit, dtype=np.int64), m.shape)[m]
            keep = ids >= 0
            parts[s][0].append(np.asarray(pred[s], dtype=np.float64)[m][keep])
            parts[s][1].append(case.labels[s][m][keep].astype(np.uint8))
            parts[s][2].append(ids[keep])
    raw = [np.concatenate(p[2]) if p[2] else np.zeros(0, dtype=np.int64) for p in parts]
    ids = np.unique(np.concatenate(raw)) if raw else np.zeros(0, dtype=np.int64)
    return UnitScores(
        scores=[np.concatenate(p[0]) if p[0] else np.zeros(0) for p in parts],
        labels=[np.concatenate(p[1]) if p[1] else np.zeros(0, dtype=np.uint8) for p in parts],
        units=[np.searchsorted(ids, r) for r in raw], n_units=int(ids.size), unit_ids=ids.tolist(),
    )


def mean_auprc_point(us: UnitScores) -> float:
    """Mean over species with positives of the exact AUPRC on all cells (NaN when none has positives)."""
    values = [average_precision(sc, lab) for sc, lab in zip(us.scores, us.labels, strict=True) if lab.sum() > 0]
    return float(np.mean(values)) if values else float("nan")


def draw_counts(n_units: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_units) float64: how often each unit is drawn in each resample of n_units draws."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_units, size=(n_resamples, n_units)) if n_units else np.zeros((n_resamples, 0), int)
    flat = draws + (np.arange(n_resamples) * n_units)[:, None]
    return np.bincount(flat.ravel(), minlength=n_resamples * n_units).reshape(n_resamples, n_units).astype(np.float64)


def rank_bins(scores: np.ndarray, bins: int | None = None) -> np.ndarray:
    """Each cell's bin, 0 for the highest scores: its rank (cells scored strictly higher) scaled to ``bins``.

    ``bins`` None: the rank itself (one bin per distinct score).
    """
    n = scores.size
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    starts = np.r_[0, np.flatnonzero(np.diff(s) != 0) + 1] if n else np.zeros(0, dtype=np.int64)
    group = np.zeros(n, dtype=np.int64)
    if n:
        group[starts[1:]] = 1
    rank = starts[np.cumsum(group)]  # ties share the rank of their group's first cell
    out = np.empty(n, dtype=np.int64)
    out[order] = rank if bins is None else rank * bins // max(n, 1)
    return out


@dataclass
class _Histograms:
    """One species of one method: per-unit positives in each bin holding positives, and negatives up to it.

    Row k of ``pos`` counts positives (per unit, in columns) in the k-th bin that holds positives; row k of
    ``neg`` counts negatives in the bins after the (k-1)-th such bin up to and including the k-th.
    Negatives ranked below every positive never change AP and are left out.
    """

    pos: sparse.csr_array  # (n_pos_bins, n_units)
    neg: sparse.csr_array  # (n_pos_bins, n_units)


def _histograms(scores: np.ndarray, labels: np.ndarray, units: np.ndarray, n_units: int,
                bins: int | None) -> _Histograms:
    """The per-unit histograms of one species (see :class:`_Histograms`)."""
    b = rank_bins(np.asarray(scores, dtype=np.float64), bins)
    y = np.asarray(labels) > 0
    pos_bins = np.unique(b[y])
    k = np.searchsorted(pos_bins, b)  # the positive bin a cell's negatives count toward
    shape = (pos_bins.size, n_units)
    pos = sparse.coo_array((np.ones(int(y.sum()), dtype=np.float32), (k[y], units[y])), shape=shape).tocsr()
    neg_cells = ~y & (k < pos_bins.size)
    neg = sparse.coo_array((np.ones(int(neg_cells.sum()), dtype=np.float32), (k[neg_cells], units[neg_cells])),
                           shape=shape).tocsr()
    pos.sum_duplicates()
    neg.sum_duplicates()
    return _Histograms(pos, neg)


def _weighted_ap(h: _Histograms, weights: list[np.ndarray]) -> np.ndarray:
    """(R,) AP of each resample given unit weights in column blocks (n_units, r); NaN where no positive has weight.

    AP = sum over bins of precision at the bin's end x the bin's share of the positives.
    """
    out = []
    for w in weights:
        tp = h.pos @ w  # (n_pos_bins, r) float32: whole counts, exact
        if not len(tp):
            out.append(np.full(w.shape[1], np.nan))
            continue
        tpc = np.cumsum(tp, axis=0)
        total = np.cumsum(h.neg @ w, axis=0)
        total += tpc
        np.maximum(total, 0.5, out=total)  # a bin with nothing ranked up to it has tp = 0
        tpc /= total
        tpc *= tp
        n_pos = tp.sum(axis=0, dtype=np.float64)
        ap = tpc.sum(axis=0, dtype=np.float64)
        out.append(np.divide(ap, n_pos, out=np.full_like(ap, np.nan), where=n_pos > 0))
    return np.concatenate(out)


def _weight_chunks(weights: np.ndarray) -> list[np.ndarray]:
    """Unit weights (R, n_units) as C-ordered float32 (n_units, r) blocks of resamples.

    Counts are exact in float32; blocks of a few hundred resamples keep each sparse product in cache.
    """
    return [np.ascontiguousarray(weights[i:i + _CHUNK].T, dtype=np.float32) for i in range(0, len(weights), _CHUNK)]


def _species_histograms(us: UnitScores, bins: int | None) -> list[_Histograms]:
    """The histograms of every species with positives."""
    return [_histograms(sc, lab, un, us.n_units, bins)
            for sc, lab, un in zip(us.scores, us.labels, us.units, strict=True) if lab.sum() > 0]


def weighted_mean_auprc(us: UnitScores, weights: np.ndarray, bins: int | None = None) -> np.ndarray:
    """(R,) mean AUPRC of each row of unit weights (R, n_units), from rank-binned scores.

    The mean of a row is over the species whose positives have weight; NaN where none has. With all
    weights 1 this is the exact mean AUPRC (with ``bins`` set, an approximation from that many rank bins).
    """
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if weights.shape[1] != us.n_units:
        raise ValueError(f"weights have {weights.shape[1]} units; the scores have {us.n_units}")
    return _mean_over_species(_species_histograms(us, bins), _weight_chunks(weights))


def _mean_over_species(hists: list[_Histograms], weights: list[np.ndarray]) -> np.ndarray:
    """(R,) mean over species of the weighted AP, over the species with weighted positives in each resample."""
    n = sum(w.shape[1] for w in weights)
    total = np.zeros(n)
    count = np.zeros(n)
    for h in hists:
        ap = _weighted_ap(h, weights)
        ok = np.isfinite(ap)
        total[ok] += ap[ok]
        count += ok
    return np.divide(total, count, out=np.full_like(total, np.nan), where=count > 0)


@dataclass
class Comparison:
    """A reference method against another: point values, their difference and its bootstrap interval.

    ``diff`` = reference - other; ``lo``/``hi`` are the 2.5 and 97.5 percentiles of the resampled
    difference; ``verdict`` is the reference's: "ahead" (lo > 0), "behind" (hi < 0) or "level".
    """

    reference: float
    other: float
    diff: float
    lo: float
    hi: float
    verdict: str
    n_resamples: int

    def as_dict(self) -> dict:
        """A plain dict (for JSON)."""
        return asdict(self)


def compare_from_resamples(ref: float, other: float, diffs: np.ndarray, n_resamples: int) -> Comparison:
    """A Comparison from point values and the resampled differences (non-finite ones dropped)."""
    d = diffs[np.isfinite(diffs)]
    lo, hi = (float(v) for v in np.percentile(d, [2.5, 97.5])) if d.size else (float("nan"), float("nan"))
    verdict = "ahead" if lo > 0 else "behind" if hi < 0 else "level"
    return Comparison(float(ref), float(other), float(ref - other), lo, hi, verdict, n_resamples)


def _check_paired(methods: dict[str, UnitScores], reference: str) -> UnitScores:
    """The reference's UnitScores, after checking every method scores the same cells with the same units."""
    if reference not in methods:
        raise ValueError(f"reference {reference!r} is not among the methods: {', '.join(methods)}")
    ref = methods[reference]
    for name, us in methods.items():
        if us.n_units != ref.n_units or us.n_species != ref.n_species:
            raise ValueError(f"{name!r} has {us.n_units} units and {us.n_species} species; "
                             f"{reference!r} has {ref.n_units} and {ref.n_species}: not paired")
        for s in range(ref.n_species):
            if not (np.array_equal(us.labels[s], ref.labels[s]) and np.array_equal(us.units[s], ref.units[s])):
                raise ValueError(f"{name!r} and {reference!r} differ in the cells or units of species {s}: not paired")
    return ref


def paired_bootstrap(methods: dict[str, UnitScores], reference: str, n_resamples: int = 1000, seed: int = 0,
                     bins: int | None = None) -> dict[str, Comparison]:
    """Mean AUPRC of ``reference`` against every other method, with a paired unit-bootstrap interval.

    Point values are exact (:func:`mean_auprc_point`), and so are the resamples' (``bins`` None, the
    default; an integer bins the ranks, an approximation). Every method sees the same draws of units
    (seeded), so the differences are paired.
    """
    ref = _check_paired(methods, reference)
    weights = _weight_chunks(draw_counts(ref.n_units, n_resamples, seed))
    resampled = {name: _mean_over_species(_species_histograms(us, bins), weights) for name, us in methods.items()}
    points = {name: mean_auprc_point(us) for name, us in methods.items()}
    return {name: compare_from_resamples(points[reference], points[name], resampled[reference] - resampled[name],
                                         n_resamples)
            for name in methods if name != reference}


def mean_ci(values: np.ndarray, n_resamples: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of a per-unit metric and the 2.5/97.5 percentiles of its bootstrap over units (NaN units dropped)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    means = draw_counts(v.size, n_resamples, seed) @ v / v.size
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(v.mean()), float(lo), float(hi)


def paired_bootstrap_units(per_unit: dict[str, np.ndarray], reference: str, n_resamples: int = 1000,
                           seed: int = 0) -> dict[str, Comparison]:
    """Mean of a per-unit metric (e.g. one AUPRC per state) of ``reference`` against every other method.

    Units where either of the two methods is NaN are dropped from that comparison; the rest are
    resampled with replacement (seeded draws, the same for both methods).
    """
    if reference not in per_unit:
        raise ValueError(f"reference {reference!r} is not among the methods: {', '.join(per_unit)}")
    ref = np.asarray(per_unit[reference], dtype=np.float64)
    out = {}
    for name, values in per_unit.items():
        if name == reference:
            continue
        other = np.asarray(values, dtype=np.float64)
        if other.shape != ref.shape:
            raise ValueError(f"{name!r} has {other.size} units; {reference!r} has {ref.size}: not paired")
        keep = np.isfinite(ref) & np.isfinite(other)
        a, b = ref[keep], other[keep]
        if a.size == 0:
            out[name] = compare_from_resamples(float("nan"), float("nan"), np.zeros(0), n_resamples)
            continue
        w = draw_counts(a.size, n_resamples, seed)
        out[name] = compare_from_resamples(a.mean(), b.mean(), w @ (a - b) / a.size, n_resamples)
    return out
