"""Scores on hidden cells: Dice, precision, recall at a threshold, AUPRC, and the success-rate curve."""

from __future__ import annotations

import numpy as np


def _ranked(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct thresholds (descending) with true and false positives at each (ties kept together)."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1] if s.size else np.array([], dtype=int)
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    return s[last], tp, fp


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the precision-recall curve (step-wise average precision); NaN without positives."""
    n_pos = float(labels.sum())
    if n_pos == 0:
        return float("nan")
    _, tp, fp = _ranked(scores, labels)
    precision = tp / (tp + fp)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The score threshold (predict positive where score >= it) that maximises Dice on these cells."""
    n_pos = float(labels.sum())
    if n_pos == 0 or scores.size == 0:
        return float("inf")
    thresholds, tp, fp = _ranked(scores, labels)
    dice = 2 * tp / (2 * tp + fp + (n_pos - tp))
    return float(thresholds[int(np.argmax(dice))])


def dice_precision_recall(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Dice, precision and recall of ``scores >= threshold``; NaN without positives."""
    pred = scores >= threshold
    y = labels.astype(bool)
    tp = float(np.sum(pred & y))
    fp = float(np.sum(pred & ~y))
    fn = float(np.sum(~pred & y))
    if tp + fn == 0:
        return {"dice": float("nan"), "precision": float("nan"), "recall": float("nan")}
    return {"dice": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
            "precision": tp / (tp + fp) if tp + fp else 0.0, "recall": tp / (tp + fn)}


def success_rate(scores: np.ndarray, labels: np.ndarray, fractions: tuple[float, ...]) -> dict[str, float]:
    """Share of hidden known sites (positive cells) inside the top k of the hidden area, per fraction k.

    Ties at the cut are shared pro rata, so a constant score gives exactly k.
    """
    n_pos = float(labels.sum())
    out = {}
    for k in fractions:
        if n_pos == 0:
            out[f"{k:g}"] = float("nan")
            continue
        n_top = k * scores.size
        s, tp, _ = _ranked(scores, labels)
        counts = np.r_[0, np.cumsum(np.bincount(np.searchsorted(-s, -scores), minlength=s.size))]
        i = int(np.searchsorted(counts, n_top, side="right")) - 1  # groups fully inside the top
        captured = tp[i - 1] if i > 0 else 0.0
        if i < s.size:
            group = counts[i + 1] - counts[i]
            group_tp = tp[i] - captured
            captured += group_tp * (n_top - counts[i]) / group
        out[f"{k:g}"] = float(captured / n_pos)
    return out


def score_species(val: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                  fractions: tuple[float, ...]) -> dict[str, float | dict[str, float]]:
    """All metrics of one species: threshold from validation, everything else on test."""
    threshold = best_threshold(*val)
    result: dict = dice_precision_recall(*test, threshold)
    result["auprc"] = average_precision(*test)
    result["threshold"] = threshold if np.isfinite(threshold) else None
    result["success_rate"] = success_rate(*test, fractions)
    result["positives"] = int(test[1].sum())
    result["cells"] = int(test[1].size)
    return result
