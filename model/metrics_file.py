"""The structure of a run's metrics.json (``m3 evaluate``), typed, and its reading."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, TypedDict

from model.config import Regime


class MeanScores(TypedDict, total=False):
    """One run's scores averaged over species (test cells), and its validation AUPRC."""

    auprc: float | None
    dice: float | None
    precision: float | None
    recall: float | None
    #: Share of the positives in the top fraction of the cells, by fraction ("0.01", "0.05", ...).
    success_rate: dict[str, float | None]
    val_auprc: float | None


class RunScores(TypedDict):
    """The scores of one trained seed (``seed-N``) or of a deterministic baseline (``deterministic``)."""

    mean: MeanScores
    per_species: dict[str, dict[str, Any]]


class MethodScores(TypedDict, total=False):
    """A method's scores in one regime: each run's, and their mean and std over runs (``summary``)."""

    runs: dict[str, RunScores]
    summary: dict[str, Any]


class Metrics(TypedDict, total=False):
    """metrics.json: per regime and method the scores, the tuned baselines, the case counts and the run's record."""

    regimes: dict[Regime, dict[str, MethodScores]]
    tuned: dict[str, Any]
    cases: dict[Regime, dict[str, int]]
    species: list[str]
    #: The experts of a gated exported model (empty otherwise).
    components: list[str]
    run: str
    config: dict[str, Any]
    cube: str
    #: The protocol's results, in a run scored by ``m3 protocol``.
    protocol: dict[str, Any]


def read_metrics(path: Path) -> Metrics | None:
    """A run's metrics.json, or None where it has none."""
    if not path.exists():
        return None
    metrics: Metrics = json.loads(path.read_text(encoding="utf-8"))
    return metrics


def seed_name(seed: int) -> str:
    """The key of a trained seed's scores in ``MethodScores.runs``."""
    return f"seed-{seed}"


def method_runs(metrics: Metrics, regime: Regime, method: str) -> dict[str, RunScores]:
    """A method's scored runs in one regime (empty where it was not scored)."""
    return metrics.get("regimes", {}).get(regime, {}).get(method, {}).get("runs", {})


def val_auprc(run: RunScores) -> float | None:
    """A run's validation AUPRC (mean over species); None where it is undefined."""
    value = run["mean"].get("val_auprc")
    return None if value is None or math.isnan(value) else float(value)
