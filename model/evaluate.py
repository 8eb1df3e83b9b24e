"""Scoring every model and baseline on the same hidden cells of validation and test blocks."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from backend.cube.contract import sha256_file
from model.baselines import KrigingBaseline, NeighbourhoodBaseline
from model.config import EXPORTED_MODEL, REGIMES, Regime, digest_dict
from model.masking import MaskGenerator
from model.metrics import average_precision, score_species
from model.metrics_file import MethodScores, Metrics, seed_name
from model.patches import EvalCase, case_inputs, evaluation_cases
from model.train import Experiment, load_trained, model_dir

log = logging.getLogger(__name__)

Pooled = dict[int, tuple[np.ndarray, np.ndarray]]  # species index -> (scores, labels) on scored cells
Predictor = Callable[[list[EvalCase]], Iterator[np.ndarray]]
METRICS = ("dice", "recall", "precision", "auprc")
CACHE_VERSION = 1


@dataclass
class EvalSet:
    """The fixed cases of one regime on validation and test blocks."""

    regime: Regime
    val: list[EvalCase]
    test: list[EvalCase]


def evaluation_sets(exp: Experiment) -> list[EvalSet]:
    """Cases for every regime (seeded; identical for every model and seed)."""
    e, cube, split = exp.cfg.eval, exp.cube, exp.split
    masks = MaskGenerator(exp.cfg.masking, len(cube.species))

    def cases(split_name: str, regime: Regime, seed: int) -> list[EvalCase]:
        return evaluation_cases(cube, split, split_name, regime, margin=e.margin_cells, seed=seed,
                                max_windows=e.max_windows, min_cells=e.min_window_cells, masks=masks,
                                region_draws=e.region_draws)

    return [EvalSet(regime, cases("val", regime, e.seed + i), cases("test", regime, e.seed + 100 + i))
            for i, regime in enumerate(REGIMES)]


def pool(cases: list[EvalCase], predictions: Iterator[np.ndarray], n_species: int) -> Pooled:
    """Gather each species' scores and labels over the scored cells of all cases."""
    scores: dict[int, list[np.ndarray]] = {s: [] for s in range(n_species)}
    labels: dict[int, list[np.ndarray]] = {s: [] for s in range(n_species)}
    for case, pred in zip(cases, predictions, strict=True):
        for s in range(n_species):
            m = case.scored[s]
            if m.any():
                scores[s].append(pred[s][m].astype(np.float64))
                labels[s].append(case.labels[s][m])
    return {s: (np.concatenate(scores[s]) if scores[s] else np.zeros(0),
                np.concatenate(labels[s]) if labels[s] else np.zeros(0, dtype=np.uint8)) for s in range(n_species)}


def mean_auprc(pooled: Pooled) -> float:
    """Mean AUPRC over species with positives."""
    values = [average_precision(*v) for v in pooled.values() if v[1].sum() > 0]
    return float(np.mean(values)) if values else float("nan")


def summarise(val: Pooled, test: Pooled, species: list[str], fractions: tuple[float, ...]) -> dict:
    """Per-species metrics (thresholds from validation) and their means over species with test positives."""
    per: dict[str, dict[str, Any]] = {
        species[s]: score_species(val[s], test[s], fractions) for s in range(len(species))
    }
    scored = [v for v in per.values() if v["positives"] > 0]
    mean: dict[str, Any] = {m: float(np.nanmean([v[m] for v in scored])) for m in METRICS}
    mean["success_rate"] = {k: float(np.nanmean([v["success_rate"][k] for v in scored]))
                            for k in (f"{f:g}" for f in fractions)}
    mean["val_auprc"] = mean_auprc(val)
    return {"per_species": per, "mean": mean}


def network_predictor(exp: Experiment, net) -> Predictor:  # noqa: ANN001 (torch module, torch imported lazily)
    """Batched sigmoid probabilities of a trained network (on CUDA when there is one, else the CPU)."""
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = net.to(device)

    def predict(cases: list[EvalCase]) -> Iterator[np.ndarray]:
        bs = exp.cfg.eval.batch_size
        with torch.no_grad():
            for i in range(0, len(cases), bs):
                x = np.stack([case_inputs(exp.cube, c, exp.layout) for c in cases[i:i + bs]])
                yield from torch.sigmoid(net(torch.from_numpy(x).to(device))).cpu().numpy()
    return predict


class CasePredictor(Protocol):
    """A method that scores one evaluation case at a time (the baselines)."""

    def predict(self, case: EvalCase) -> np.ndarray:
        """Scores (S, H, W) for one case."""
        ...


def baseline_predictor(model: CasePredictor) -> Predictor:
    """Case-by-case predictions of a numpy baseline."""
    def predict(cases: list[EvalCase]) -> Iterator[np.ndarray]:
        for case in cases:
            yield model.predict(case)
    return predict


def tune_neighbourhood(exp: Experiment, cases: list[EvalCase]) -> NeighbourhoodBaseline:
    """Choose radius and same-species weight by mean AUPRC on validation cases."""
    e, n_s = exp.cfg.eval, len(exp.cube.species)
    base = NeighbourhoodBaseline(exp.cooccurrence)
    best, best_score = base, -1.0
    for radius in e.neighbourhood_radii:
        parts = [base.components(c, radius) for c in cases]
        for w in e.neighbourhood_weights:
            score = mean_auprc(pool(cases, (w * a + (1 - w) * b for a, b in parts), n_s))
            if score > best_score:
                best, best_score = NeighbourhoodBaseline(exp.cooccurrence, radius, w), score
    log.info("neighbourhood: radius %d, weight %.2f (val mean AUPRC %.4f)", best.radius, best.weight, best_score)
    return best


def tune_kriging(exp: Experiment, sets: list[EvalSet]) -> KrigingBaseline:
    """Choose the variogram model by mean AUPRC on a subset of validation windows (region and mixed)."""
    e, n_s = exp.cfg.eval, len(exp.cube.species)
    cases = [c for s in sets if s.regime != "species" for c in s.val[: e.kriging_tune_windows]]
    best, best_score = KrigingBaseline(e.kriging_models[0], e.kriging_points, e.seed), -1.0
    for name in e.kriging_models:
        model = KrigingBaseline(name, e.kriging_points, e.seed)
        score = mean_auprc(pool(cases, baseline_predictor(model)(cases), n_s))
        log.info("kriging %s: val mean AUPRC %.4f", name, score)
        if score > best_score:
            best, best_score = model, score
    return best


def _fingerprint(*parts: object) -> str:
    """sha256 of the JSON of the parts (what a cached score depends on)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _cached(path: Path, fingerprint: str, compute: Callable[[], dict]) -> dict:
    """A cached result when its fingerprint matches, else computed and cached (atomic write)."""
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored.get("fingerprint") == fingerprint:
            log.info("reusing %s", path)
            return stored["result"]
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"fingerprint": fingerprint, "result": result}, allow_nan=True), encoding="utf-8")
    os.replace(tmp, path)
    return result


def evaluate_run(exp: Experiment, run_dir: Path, progress: bool = True) -> Metrics:
    """Score every trained model (every seed) and every baseline; the metrics.json payload.

    Scores are cached per model and seed under ``eval_cache/`` (keyed by the evaluation settings,
    the cube and the checkpoint's sha256), so re-running after more seeds finish only scores those.
    """
    cfg, species = exp.cfg, exp.cube.species
    fractions = tuple(cfg.eval.success_fractions)
    sets = evaluation_sets(exp)
    base_fp = [cfg.to_dict()["eval"], cfg.to_dict()["data"], exp.cube.cube_sha256, species, CACHE_VERSION]
    if cfg.eval.region_draws > 0:  # the cases then depend on the training masks' shapes too
        base_fp.append(cfg.to_dict()["masking"])
    cache = run_dir / "eval_cache"
    results: dict[Regime, dict[str, MethodScores]] = {s.regime: {} for s in sets}

    def score(regime_set: EvalSet, predictor: Predictor) -> dict:
        n_s = len(species)
        val = pool(regime_set.val, predictor(regime_set.val), n_s)
        test = pool(regime_set.test, predictor(regime_set.test), n_s)
        return summarise(val, test, species, fractions)

    jobs = [(arch, seed) for arch in cfg.models for seed in cfg.train.seeds
            if (model_dir(run_dir, arch, seed) / "final.pt").exists()]
    for arch, seed in tqdm(jobs, desc="networks", disable=None if progress else True):
        path = model_dir(run_dir, arch, seed) / "final.pt"

        def compute(arch: str = arch, path: Path = path) -> dict:
            predictor = network_predictor(exp, load_trained(exp, arch, path))
            return {s.regime: score(s, predictor) for s in sets}

        fp = _fingerprint(base_fp, digest_dict(cfg)["models"][arch], sha256_file(path))
        for regime, summary in _cached(cache / f"{arch}-seed-{seed}.json", fp, compute).items():
            results[regime].setdefault(arch, {"runs": {}})["runs"][seed_name(seed)] = summary

    def baselines() -> dict:
        kriging = tune_kriging(exp, sets)
        out: dict = {"tuned": {}, "scores": {}}
        for regime_set in tqdm(sets, desc="baselines", disable=None if progress else True):
            hood = tune_neighbourhood(exp, regime_set.val)
            out["tuned"][regime_set.regime] = {"neighbourhood": {"radius": hood.radius, "weight": hood.weight},
                                               "kriging": {"variogram": kriging.variogram, "points": kriging.points}}
            out["scores"][regime_set.regime] = {"neighbourhood": score(regime_set, baseline_predictor(hood)),
                                                "kriging": score(regime_set, baseline_predictor(kriging))}
        return out

    base = _cached(cache / "baselines.json", _fingerprint(base_fp), baselines)
    for regime, scores in base["scores"].items():
        for method, summary in scores.items():
            results[regime][method] = {"runs": {"deterministic": summary}}
    for methods in results.values():
        for entry in methods.values():
            entry["summary"] = aggregate(list(entry["runs"].values()), species, fractions)
    cases = {s.regime: {"val_cases": len(s.val), "test_cases": len(s.test),
                        "test_cells": int(sum(c.scored.sum() for c in s.test))} for s in sets}
    return {"regimes": results, "tuned": base["tuned"], "cases": cases, "species": species,
            "components": list(cfg.models[EXPORTED_MODEL].experts)}


def _mean_std(values: list[float]) -> dict[str, float]:
    """Mean and population std over runs (NaN-aware)."""
    arr = np.asarray(values, dtype=float)
    if np.all(np.isnan(arr)):
        return {"mean": float("nan"), "std": float("nan")}
    return {"mean": float(np.nanmean(arr)), "std": float(np.nanstd(arr))}


def aggregate(runs: Sequence[Mapping[str, Any]], species: list[str], fractions: tuple[float, ...]) -> dict:
    """Mean ± std over seeds of the mean metrics and of each species' metrics."""
    keys = [f"{f:g}" for f in fractions]
    mean: dict[str, Any] = {m: _mean_std([r["mean"][m] for r in runs]) for m in (*METRICS, "val_auprc")}
    mean["success_rate"] = {k: _mean_std([r["mean"]["success_rate"][k] for r in runs]) for k in keys}
    per = {s: {m: _mean_std([r["per_species"][s][m] for r in runs]) for m in METRICS} for s in species}
    return {"mean": mean, "per_species": per, "n_runs": len(runs)}
