"""The evaluation protocol: sealed test, K-fold spatial cross-validation, leave-one-state-out, unsurveyed check.

``m3 protocol --config C --out R`` runs the stages of ``C``'s ``protocol`` section, each as folds that
train the configured networks and tune the baselines on their own training cells, then score every
method on the same held-out cells:

- ``cv``: fold k's blocks validate, the other folds train (K folds over the covered blocks that are not
  sealed); the three masking regimes, bootstrap units = blocks.
- ``loso``: one surveyed state at a time loses its survey records (from inputs and labels) and keeps only
  what an unsurveyed state has (the national thematic records, visible); its other cells are hidden and
  scored against its survey records; bootstrap units = states.
- ``unsurveyed``: every national thematic record outside the surveyed states is removed from inputs and
  training; the unsurveyed area is hidden and the map is scored on how it ranks those records.

The sealed test blocks are cut from the cube (labels removed, cells hidden) before anything else reads
it (:func:`sealed_view`); only ``m3 evaluate --test`` opens them. Every fold's scores are saved as they
are made, so a stopped run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from model.config import EXPORTED_MODEL, GATED, REGIMES, REGION_REGIMES, ExperimentConfig, Regime, digest_dict
from model.cube_data import CubeArrays
from model.masking import MaskGenerator
from model.metrics import average_precision, best_threshold, success_rate
from model.patches import EvalCase, _origin, evaluation_cases
from model.splits import BUFFER, CONTEXT, TRAIN, UNKNOWN, BlockSplit, ProtocolFolds, fold_split, protocol_folds

log = logging.getLogger(__name__)

#: species index -> (scores, labels, units) over the scored cells of a stage.
Scores = dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]
Predictor = Callable[[list[EvalCase]], Iterator[np.ndarray]]
#: The regime of the LOSO and unsurveyed stages: everything hidden in the held-out area.
HELD_OUT = "held_out"
PROTOCOL_VERSION = 1


# ---------------------------------------------------------------------------------------------- data views


def folds_of(cfg: ExperimentConfig, cube: CubeArrays) -> ProtocolFolds:
    """The protocol's sealed test and folds for this configuration (they depend on coverage only)."""
    if cfg.protocol is None:
        raise ValueError("the configuration has no protocol section")
    d, p = cfg.data, cfg.protocol
    return protocol_folds(cube.coverage, d.block_cells, d.buffer_cells, d.min_block_coverage, p.test_fraction,
                          p.test_seed, p.folds)


def _replace_labels(cube: CubeArrays, cells: np.ndarray, labels: np.ndarray | None = None,
                    survey: np.ndarray | None = None, national: np.ndarray | None = None,
                    uncover: bool = True) -> CubeArrays:
    """A copy of the cube whose labels on ``cells`` are replaced (zero by default) and no longer covered."""
    def put(layer: np.ndarray | None, value: np.ndarray | None) -> np.ndarray | None:
        if layer is None:
            return None
        out = layer.copy()
        out[:, cells] = 0 if value is None else value[:, cells]
        return out

    coverage = cube.coverage & ~cells if uncover else cube.coverage
    new_labels = put(cube.labels, labels)
    assert new_labels is not None
    return dataclasses.replace(cube, labels=new_labels, survey_labels=put(cube.survey_labels, survey),
                               national_labels=put(cube.national_labels, national), coverage=coverage)


def network_cube(cfg: ExperimentConfig, cube: CubeArrays) -> CubeArrays:
    """The cube as the networks read it: only the configured covariates (the baselines read them all)."""
    if cfg.data.covariates is None:
        return cube
    unknown = [c for c in cfg.data.covariates if c not in cube.covariates]
    if unknown:
        raise ValueError(f"covariates {unknown} unknown in the cube; known: {', '.join(cube.covariates)}")
    idx = [cube.covariates.index(c) for c in cfg.data.covariates]
    return dataclasses.replace(cube, covariates=list(cfg.data.covariates), cov=cube.cov[idx], valid=cube.valid[idx])


def sealed_view(cube: CubeArrays, folds: ProtocolFolds) -> CubeArrays:
    """The cube with every label of the sealed test blocks removed and those blocks uncovered.

    Training, tuning, thresholds and selection only ever see this view; the split marks the same cells
    UNKNOWN, so they are hidden in every input too.
    """
    return _replace_labels(cube, folds.sealed_cells())


def _require_sources(cube: CubeArrays, stage: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The survey labels, national labels and state index a stage needs, or an error in words."""
    if cube.survey_labels is None or cube.national_labels is None or cube.state_index is None:
        raise ValueError(f"the {stage} stage needs labels_survey.tif, labels_national.tif and states.tif in the "
                         "cube; rebuild it with `m3 cube build`")
    return cube.survey_labels, cube.national_labels, cube.state_index


def _buffer(cells: np.ndarray, near: np.ndarray, width: int) -> np.ndarray:
    """Train cells within ``width`` cells of ``near`` become BUFFER (a copy of ``cells``)."""
    out = cells.copy()
    if width > 0:
        grown = ndimage.maximum_filter(near.astype(np.uint8), size=2 * width + 1, mode="constant") > 0
        out[grown & (out == TRAIN)] = BUFFER
    return out


@dataclass
class HeldOut:
    """A stage that holds out an area: the training view and split, and what is scored there."""

    name: str
    view: CubeArrays  # what training and tuning see
    split: BlockSplit  # TRAIN elsewhere; UNKNOWN where hidden
    area: np.ndarray  # (H, W) bool: the cells scored
    targets: np.ndarray  # (S, H, W) uint8: what the scored cells are scored against
    units: np.ndarray  # (H, W) int: resampling unit of each cell


def loso_stage(cfg: ExperimentConfig, base: CubeArrays, folds: ProtocolFolds, state: str) -> HeldOut:
    """Leave one surveyed state out: its survey records leave inputs and labels, its national ones stay visible.

    The state is uncovered (no training target); its cells without a national record are UNKNOWN (hidden
    in every input), those with one are visible context holding the national records only. Scored: the
    state's hidden cells that are not sealed, against its survey records.
    """
    survey, national, state_index = _require_sources(base, "loso")
    in_state = base.state_mask(state)
    sealed = folds.sealed_cells()
    view = _replace_labels(base, in_state, labels=national, survey=np.zeros_like(survey), national=national)
    split = fold_split(folds, None, seal=True)
    visible = in_state & (national.max(axis=0) > 0)
    cells = split.cell_split.copy()
    cells[in_state] = UNKNOWN
    cells[visible] = CONTEXT
    cells = _buffer(cells, in_state, cfg.data.buffer_cells)
    split = dataclasses.replace(split, cell_split=cells)
    area = in_state & ~visible & ~sealed
    targets = np.where(area[None], survey, 0).astype(np.uint8)
    return HeldOut(f"loso-{state}", view, split, area, targets, np.zeros(in_state.shape, dtype=np.int64))


def unsurveyed_stage(cfg: ExperimentConfig, base: CubeArrays, folds: ProtocolFolds) -> HeldOut:
    """Hold out every national record outside the surveyed states; score how the map ranks them there.

    Inputs and labels lose those records; the unsurveyed part of CONUS is UNKNOWN (hidden). Scored: the
    unsurveyed CONUS cells that are not sealed (a seeded uniform sample of ``protocol.unsurveyed_sample`` of
    them), against the national records held out; units = states.
    """
    _, national, state_index = _require_sources(base, "unsurveyed")
    conus = base.conus if base.conus is not None else state_index > 0
    outside = conus & ~base.coverage
    sealed = folds.sealed_cells()
    view = _replace_labels(base, outside, uncover=False)
    split = fold_split(folds, None, seal=True)
    cells = split.cell_split.copy()
    cells[outside] = UNKNOWN
    cells = _buffer(cells, outside, cfg.data.buffer_cells)
    split = dataclasses.replace(split, cell_split=cells)
    area = outside & ~sealed
    if cfg.protocol is not None and cfg.protocol.unsurveyed_sample < 1.0:
        draw = np.random.default_rng(cfg.protocol.test_seed + 1).random(area.shape)
        area &= draw < cfg.protocol.unsurveyed_sample
    targets = np.where(area[None], base.labels, 0).astype(np.uint8)
    return HeldOut("unsurveyed", view, split, area, targets, state_index.astype(np.int64))


def tile_cases(held: HeldOut, tile: int, margin: int) -> list[EvalCase]:
    """Square tiles over the held-out area, each read with a margin; every area cell is scored in one tile.

    The hidden cells are the split's UNKNOWN cells (every species); a case's labels are the view's where
    visible and the targets where hidden, so no hidden target reaches an input.
    """
    rows, cols = np.nonzero(held.area)
    if rows.size == 0:
        return []
    h, w = held.area.shape
    size = tile + 2 * margin
    unknown = held.split.cell_split == UNKNOWN
    n_species = held.targets.shape[0]
    cases = []
    for r in range(int(rows.min()) // tile * tile, int(rows.max()) + 1, tile):
        for c in range(int(cols.min()) // tile * tile, int(cols.max()) + 1, tile):
            core = np.zeros((h, w), dtype=bool)
            core[r:r + tile, c:c + tile] = True
            r0, c0 = _origin(r + tile // 2, size, h), _origin(c + tile // 2, size, w)
            win = (slice(r0, r0 + size), slice(c0, c0 + size))
            target = (held.area & core)[win]
            if not target.any():
                continue
            hidden = np.repeat(unknown[win][None], n_species, axis=0)
            labels = np.where(hidden, held.targets[:, win[0], win[1]], held.view.labels[:, win[0], win[1]])
            cases.append(EvalCase(held.name, HELD_OUT, (r0, c0), hidden, labels.astype(np.uint8), hidden & target[None],
                                  held.view.coverage[win], held.units[win]))
    return cases


# ------------------------------------------------------------------------------------------ scores on disk


def collect(cases: list[EvalCase], predictions: Iterator[np.ndarray], n_species: int) -> Scores:
    """Each species' scores, labels and units over the scored cells of all cases."""
    parts: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {s: [] for s in range(n_species)}
    for case, pred in zip(cases, predictions, strict=True):
        for s in range(n_species):
            m = case.scored[s]
            if m.any():
                units = np.broadcast_to(np.asarray(case.unit, dtype=np.int64), m.shape)[m]
                parts[s].append((pred[s][m].astype(np.float32), case.labels[s][m].astype(np.uint8), units))
    out: Scores = {}
    for s, p in parts.items():
        if p:
            out[s] = (np.concatenate([a for a, _, _ in p]), np.concatenate([b for _, b, _ in p]),
                      np.concatenate([u for _, _, u in p]))
        else:
            out[s] = (np.zeros(0, np.float32), np.zeros(0, np.uint8), np.zeros(0, np.int64))
    return out


def save_scores(path: Path, scores: Scores) -> None:
    """Write scores atomically as a compressed .npz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for s, (sc, lb, un) in scores.items():
        arrays[f"s{s}_scores"], arrays[f"s{s}_labels"], arrays[f"s{s}_units"] = sc, lb, un
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
    os.replace(tmp, path)


def load_scores(path: Path, n_species: int) -> Scores:
    """Read scores written by :func:`save_scores`."""
    with np.load(path) as z:
        return {s: (z[f"s{s}_scores"], z[f"s{s}_labels"], z[f"s{s}_units"]) for s in range(n_species)}


def merge(parts: list[Scores]) -> Scores:
    """Concatenate the scores of several folds, species by species."""
    return {s: tuple(np.concatenate([p[s][i] for p in parts]) for i in range(3))  # type: ignore[misc]
            for s in parts[0]}


def average(parts: list[Scores]) -> Scores:
    """The mean of several methods' scores on the same cells (e.g. a network's training seeds)."""
    return {s: (np.mean([p[s][0] for p in parts], axis=0).astype(np.float32), parts[0][s][1], parts[0][s][2])
            for s in parts[0]}


# ---------------------------------------------------------------------------------------------- methods


def network_names(cfg: ExperimentConfig) -> list[str]:
    """The configured networks scored as methods: every model but the experts inside a gated model."""
    experts = {e for spec in cfg.models.values() if spec.arch == GATED for e in spec.experts}
    return [name for name in cfg.models if name not in experts]


def _train_cases(exp: Any, regimes: tuple[Regime, ...], windows: int, seed: int) -> dict[str, list[EvalCase]]:
    """Evaluation-like cases drawn on train blocks (what the baselines are tuned and fitted on)."""
    e = exp.cfg.eval
    masks = MaskGenerator(exp.cfg.masking, len(exp.cube.species))
    return {regime: evaluation_cases(exp.cube, exp.split, "train", regime, margin=e.margin_cells, seed=seed + i,
                                     max_windows=windows, min_cells=e.min_window_cells, masks=masks,
                                     region_draws=e.region_draws)
            for i, regime in enumerate(regimes)}


def _mean_auprc(scores: Scores) -> float:
    """Mean over species with positives of AUPRC."""
    values = [average_precision(sc.astype(np.float64), lb) for sc, lb, _ in scores.values() if lb.sum() > 0]
    return float(np.mean(values)) if values else float("nan")


def baseline_methods(exp: Any, names: tuple[str, ...], tune: dict[str, list[EvalCase]],
                     regime_of: Callable[[str], str]) -> tuple[dict[str, Callable[[str], Predictor]], dict]:
    """Each baseline tuned (and fitted) on training cases: name -> (regime -> predictor), and what was chosen.

    ``tune`` holds training cases per regime; ``regime_of`` maps a scored regime to the training regime
    that resembles it (the held-out stages use the region regime).
    """
    from model.baselines import KrigingBaseline, NeighbourhoodBaseline
    from model.evaluate import baseline_predictor, tune_neighbourhood

    e, n_s = exp.cfg.eval, len(exp.cube.species)
    chosen: dict[str, Any] = {}
    methods: dict[str, Callable[[str], Predictor]] = {}
    if "neighbourhood" in names:
        hoods: dict[str, NeighbourhoodBaseline] = {}

        def hood(regime: str) -> Predictor:
            r = regime_of(regime)
            if r not in hoods:
                hoods[r] = tune_neighbourhood(exp, tune[r])
                chosen.setdefault("neighbourhood", {})[r] = {"radius": hoods[r].radius, "weight": hoods[r].weight}
            return baseline_predictor(hoods[r])
        methods["neighbourhood"] = hood
    if "kriging" in names:
        cases = [c for r in REGION_REGIMES if r in tune for c in tune[r][: e.kriging_tune_windows]]
        best, best_score = KrigingBaseline(e.kriging_models[0], e.kriging_points, e.seed), -1.0
        if len(e.kriging_models) > 1:
            for name in e.kriging_models:
                model = KrigingBaseline(name, e.kriging_points, e.seed)
                score = _mean_auprc(collect(cases, baseline_predictor(model)(cases), n_s))
                if score > best_score:
                    best, best_score = model, score
        chosen["kriging"] = {"variogram": best.variogram, "points": best.points}
        kriging = best
        methods["kriging"] = lambda regime: baseline_predictor(kriging)
    if "boosted" in names:
        from model.tabular import HGB_GRID, GradientBoostedBaseline

        fitted: dict[str, Any] = {}

        def boosted(regime: str) -> Predictor:
            r = regime_of(regime)
            if "params" not in chosen.get("boosted", {}):
                grid = list(exp.cfg.protocol.boosted_grid) or list(HGB_GRID)
                chosen["boosted"] = {"params": _choose_boosted(exp, tune[r], grid)}
            if r not in fitted:
                model = GradientBoostedBaseline(**chosen["boosted"]["params"])
                model.fit(exp.cube, tune[r], exp.cooccurrence, max_cells_per_species=exp.cfg.protocol.boosted_cells,
                          seed=e.seed)
                fitted[r] = model
            return baseline_predictor(fitted[r])
        methods["boosted"] = boosted
    if "roughness" in names:
        from model.tabular import RoughnessBaseline

        rough = RoughnessBaseline(exp.cube)
        methods["roughness"] = lambda regime: baseline_predictor(rough)
    return methods, chosen


def _choose_boosted(exp: Any, cases: list[EvalCase], grid: list[dict]) -> dict:
    """The gradient-boosted setting with the best mean AUPRC on half the training blocks, fitted on the other half."""
    from model.evaluate import baseline_predictor
    from model.tabular import GradientBoostedBaseline

    windows = sorted({c.origin for c in cases})
    held_back = set(windows[1::2])  # every other training window (each is one block)
    fit = [c for c in cases if c.origin not in held_back]
    check = [c for c in cases if c.origin in held_back]
    if not fit or not check or len(grid) == 1:
        return dict(grid[0])
    best, best_score = grid[0], -1.0
    for params in grid:
        model = GradientBoostedBaseline(**params)
        model.fit(exp.cube, fit, exp.cooccurrence, max_cells_per_species=exp.cfg.protocol.boosted_cells,
                  seed=exp.cfg.eval.seed)
        score = _mean_auprc(collect(check, baseline_predictor(model)(check), len(exp.cube.species)))
        log.info("boosted %s: mean AUPRC %.4f on held-back training blocks", params, score)
        if score > best_score:
            best, best_score = params, score
    return dict(best)


# ------------------------------------------------------------------------------------------------ stages


def _config_hash(cfg: ExperimentConfig) -> str:
    """sha256 of the configuration (what a protocol folder's scores depend on)."""
    return hashlib.sha256(json.dumps(digest_dict(cfg), sort_keys=True).encode()).hexdigest()


def _run_fold(cfg: ExperimentConfig, fold_dir: Path, exp: Any, eval_sets: dict[str, list[EvalCase]],
              tune_regimes: tuple[Regime, ...], regime_of: Callable[[str], str], progress: bool,
              score_exp: Any = None, models_dir: Path | None = None) -> dict:
    """Train this fold's networks, tune its baselines, score every method on every regime (cached on disk).

    ``exp`` is what training and tuning see (its cube holds every covariate; the networks read the
    configured ones). ``score_exp`` (default ``exp``) supplies the covariates of the scored windows; with
    ``models_dir`` the networks are the trained ones there, never trained here.
    """
    from model.evaluate import network_predictor
    from model.train import Experiment, load_trained, model_dir, train_model

    assert cfg.protocol is not None
    score_exp = score_exp or exp
    net_exp = Experiment(cfg, network_cube(cfg, exp.cube), exp.split)
    net_score_exp = Experiment(cfg, network_cube(cfg, score_exp.cube), score_exp.split)
    n_s = len(exp.cube.species)
    done_path = fold_dir / "fold.json"
    if done_path.exists():
        return json.loads(done_path.read_text(encoding="utf-8"))
    names = []
    for arch in network_names(cfg):
        for seed in cfg.train.seeds:
            name = f"{arch}-seed-{seed}"
            names.append(name)
            if all((fold_dir / "scores" / f"{name}-{r}.npz").exists() for r in eval_sets):
                continue
            if models_dir is None:
                path = train_model(net_exp, arch, seed, fold_dir, progress=progress)
            else:
                path = model_dir(models_dir, arch, seed) / "final.pt"
                if not path.exists():
                    raise FileNotFoundError(f"{path} not found; train first with `m3 train --out {models_dir}`")
            predict = network_predictor(net_score_exp, load_trained(net_exp, arch, path))
            for regime, cases in eval_sets.items():
                save_scores(fold_dir / "scores" / f"{name}-{regime}.npz", collect(cases, predict(cases), n_s))
    tune = _train_cases(exp, tune_regimes, cfg.protocol.tune_windows, cfg.eval.seed + 500)
    methods, chosen = baseline_methods(exp, cfg.protocol.baselines, tune, regime_of)
    for name, predictor_for in methods.items():
        names.append(name)
        for regime, cases in eval_sets.items():
            path = fold_dir / "scores" / f"{name}-{regime}.npz"
            if not path.exists():
                save_scores(path, collect(cases, predictor_for(regime)(cases), n_s))
    summary = {"methods": names, "regimes": list(eval_sets), "tuned": chosen,
               "cases": {r: len(c) for r, c in eval_sets.items()},
               "cells": {r: int(sum(int(c.scored.sum()) for c in cases)) for r, cases in eval_sets.items()}}
    tmp = done_path.with_name("fold.json.tmp")
    tmp.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    os.replace(tmp, done_path)
    return summary


def _write_atomic(path: Path, text: str) -> None:
    """Write a text file so that a concurrent reader sees the old or the new content, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def protocol_units(cfg: ExperimentConfig, covered_states: list[str], stages: tuple[str, ...] | None = None
                   ) -> list[str]:
    """The protocol's units of work in order (``cv-0``.., ``loso-CA``.., ``unsurveyed``), one folder each."""
    assert cfg.protocol is not None
    p = cfg.protocol
    units: list[str] = []
    for stage in stages or p.stages:
        if stage == "cv":
            units += [f"cv-{k}" for k in (p.cv_folds if p.cv_folds is not None else range(p.folds))]
        elif stage == "loso":
            units += [f"loso-{s}" for s in (p.loso_states if p.loso_states is not None else covered_states)]
        elif stage == "unsurveyed":
            units.append("unsurveyed")
        else:
            raise ValueError(f"stage {stage!r} unknown")
    return units


def run_protocol(cfg: ExperimentConfig, cube: CubeArrays, run_dir: Path, progress: bool = True,
                 stages: tuple[str, ...] | None = None, units: tuple[str, ...] | None = None) -> dict:
    """Run (or resume) the protocol's stages into ``run_dir/protocol``; return the aggregated results.

    ``cube`` is the whole cube as loaded; it is sealed here before anything else reads it. ``units``
    (e.g. ``cv-2``, ``loso-UT``) runs only those units of the stages, so that several processes can
    share a run (``scripts/gpu_sweep.py``).
    """
    from model.train import Experiment

    if cfg.protocol is None:
        raise ValueError("the configuration has no protocol section; add one (see configs/demo.yaml)")
    p = cfg.protocol
    folds = folds_of(cfg, cube)
    base = sealed_view(cube, folds)
    del cube  # from here on only the sealed view is read
    out = run_dir / "protocol"
    _stamp_run(cfg, base, folds, out)
    todo = stages or p.stages
    if units is not None:
        known = protocol_units(cfg, list(base.covered_states), todo)
        unknown = [u for u in units if u not in known]
        if unknown:
            raise ValueError(f"unit(s) {', '.join(unknown)} not in this protocol; its units: {', '.join(known)}")
    wanted = set(units) if units is not None else None
    e = cfg.eval
    masks = MaskGenerator(cfg.masking, len(base.species))
    for stage in todo:
        if stage == "cv":
            for k in (p.cv_folds if p.cv_folds is not None else range(p.folds)):
                if wanted is not None and f"cv-{k}" not in wanted:
                    continue
                log.info("protocol: cross-validation fold %d of %d", k + 1, p.folds)
                exp = Experiment(cfg, base, fold_split(folds, k, seal=True))
                sets: dict[str, list[EvalCase]] = {
                    regime: evaluation_cases(base, exp.split, "val", regime, margin=e.margin_cells, seed=e.seed + i,
                                             max_windows=e.max_windows, min_cells=e.min_window_cells, masks=masks,
                                             region_draws=e.region_draws)
                    for i, regime in enumerate(REGIMES)}
                _run_fold(cfg, out / f"cv-{k}", exp, sets, REGIMES, lambda r: r, progress)
        elif stage in ("loso", "unsurveyed"):
            names = ((list(p.loso_states) if p.loso_states is not None else list(base.covered_states))
                     if stage == "loso" else [""])
            for state in names:
                if wanted is not None and (f"loso-{state}" if stage == "loso" else "unsurveyed") not in wanted:
                    continue
                held = loso_stage(cfg, base, folds, state) if stage == "loso" else unsurveyed_stage(cfg, base, folds)
                log.info("protocol: %s", held.name)
                exp = Experiment(cfg, held.view, held.split)
                cases = tile_cases(held, p.tile_cells, e.margin_cells)
                _run_fold(cfg, out / held.name, exp, {HELD_OUT: cases}, ("region",), lambda r: "region", progress)
        else:
            raise ValueError(f"stage {stage!r} unknown")
    return aggregate_protocol(cfg, base.species, out)


def _stamp_run(cfg: ExperimentConfig, base: CubeArrays, folds: ProtocolFolds, out: Path) -> None:
    """Write the run's configuration-and-cube digest and its folds; refuse a folder stamped by another run."""
    p = cfg.protocol
    assert p is not None
    out.mkdir(parents=True, exist_ok=True)
    stamp = out / "config.sha256"
    digest = hashlib.sha256((_config_hash(cfg) + base.cube_sha256).encode()).hexdigest()
    if stamp.exists() and stamp.read_text(encoding="utf-8").strip() != digest:
        raise ValueError(f"{out} holds a protocol run of another configuration or cube; choose another --out or "
                         "delete it")
    _write_atomic(stamp, digest + "\n")  # processes sharing a run write the same bytes
    _write_atomic(out / "folds.json", json.dumps({
        "n_folds": p.folds, "sealed_blocks": int((folds.fold == folds.SEALED).sum()),
        "fold_blocks": [int((folds.fold == k).sum()) for k in range(p.folds)], "test_seed": p.test_seed,
        "block_fold": folds.fold.tolist()}) + "\n")


def score_test(cfg: ExperimentConfig, cube: CubeArrays, run_dir: Path, progress: bool = True) -> dict:
    """Score the run's trained networks and the baselines on the sealed test blocks; log the scoring.

    The networks are those ``m3 train`` wrote into ``run_dir`` (trained on the sealed view, every fold);
    the baselines are tuned on the sealed view's training cells, as in the folds. Each call appends a line
    (UTC time, configuration sha256, git commit) to ``run_dir/test_log.csv`` and scores afresh.
    """
    from model.train import Experiment

    assert cfg.protocol is not None
    folds = folds_of(cfg, cube)
    sealed = Experiment(cfg, sealed_view(cube, folds), fold_split(folds, None, seal=True))
    opened = Experiment(cfg, cube, fold_split(folds, None, seal=False))
    e = cfg.eval
    masks = MaskGenerator(cfg.masking, len(cube.species))
    sets: dict[str, list[EvalCase]] = {
        regime: evaluation_cases(cube, opened.split, "test", regime, margin=e.margin_cells, seed=e.seed + 100 + i,
                                 max_windows=10 ** 6, min_cells=e.min_window_cells, masks=masks,
                                 region_draws=e.region_draws)
        for i, regime in enumerate(REGIMES)}
    out = run_dir / "test"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    _log_test(cfg, run_dir)
    _run_fold(cfg, out, sealed, sets, REGIMES, lambda r: r, progress, score_exp=opened, models_dir=run_dir)
    n_s = len(cube.species)
    result: dict[str, Any] = {"regimes": {}, "scorings": len(test_scorings(run_dir))}
    for regime in REGIMES:
        methods = _public(_method_scores([out], regime, n_s, cfg))
        result["regimes"][regime] = {
            "auprc": {m: _mean_auprc(s) for m, s in methods.items()},
            "success": {m: _success(s, tuple(e.success_fractions)) for m, s in methods.items()},
            "compare": _compare(cfg, methods, EXPORTED_MODEL) if EXPORTED_MODEL in methods else {},
        }
    return result


def _log_test(cfg: ExperimentConfig, run_dir: Path) -> None:
    """Append one scoring of the sealed test to ``run_dir/test_log.csv``."""
    import datetime
    import subprocess

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                                timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    path = run_dir / "test_log.csv"
    new = not path.exists()
    with path.open("a", encoding="utf-8") as fh:
        if new:
            fh.write("time,config_sha256,commit\n")
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        fh.write(f"{now},{_config_hash(cfg)},{commit}\n")
    log.info("sealed test scored (%d scorings logged in %s)", len(test_scorings(run_dir)), path)


def test_scorings(run_dir: Path) -> list[dict[str, str]]:
    """The sealed test's scorings of a run (time, configuration sha256, commit), oldest first."""
    path = run_dir / "test_log.csv"
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    keys = lines[0].split(",")
    return [dict(zip(keys, line.split(","), strict=True)) for line in lines[1:] if line.strip()]


# ------------------------------------------------------------------------------------------- aggregation


def _stage_dirs(out: Path, prefix: str) -> list[Path]:
    """Finished fold folders of one stage, in name order."""
    return sorted(d for d in out.glob(f"{prefix}*") if (d / "fold.json").exists())


def _method_scores(dirs: list[Path], regime: str, n_species: int, cfg: ExperimentConfig) -> dict[str, Scores]:
    """Each method's scores over the folds (networks: the mean over seeds; each seed as ``arch@seed``)."""
    names = json.loads((dirs[0] / "fold.json").read_text(encoding="utf-8"))["methods"]
    out: dict[str, Scores] = {}
    for name in names:
        out[name] = merge([load_scores(d / "scores" / f"{name}-{regime}.npz", n_species) for d in dirs])
    for arch in network_names(cfg):
        seeds = [f"{arch}-seed-{s}" for s in cfg.train.seeds if f"{arch}-seed-{s}" in out]
        if seeds:
            out[arch] = average([out[s] for s in seeds])
    return out


def _success(scores: Scores, fractions: tuple[float, ...]) -> dict[str, float]:
    """Mean over species with positives of the share of positives in the top k of scored cells."""
    per = [success_rate(sc.astype(np.float64), lb, fractions) for sc, lb, _ in scores.values() if lb.sum() > 0]
    return {f"{k:g}": float(np.mean([p[f"{k:g}"] for p in per])) if per else float("nan") for k in fractions}


def _compare(cfg: ExperimentConfig, methods: dict[str, Scores], reference: str) -> dict[str, dict]:
    """Paired bootstrap intervals of reference minus each other method (pooled mean AUPRC, units resampled)."""
    from model.stats import UnitScores, paired_bootstrap

    assert cfg.protocol is not None
    ids = np.unique(np.concatenate([u for sc in methods.values() for _, _, u in sc.values()]))
    units = {m: UnitScores(scores=[sc[s][0] for s in sorted(sc)], labels=[sc[s][1] for s in sorted(sc)],
                           units=[np.searchsorted(ids, sc[s][2]) for s in sorted(sc)], n_units=int(ids.size),
                           unit_ids=ids.tolist())
             for m, sc in methods.items()}
    comps = paired_bootstrap(units, reference, n_resamples=cfg.protocol.bootstrap, seed=cfg.eval.seed)
    return {m: c.as_dict() for m, c in comps.items()}


def _seed_spread(cfg: ExperimentConfig, methods: dict[str, Scores], metric: Callable[[Scores], float]) -> dict:
    """Mean ± std over training seeds of a metric, per network."""
    out = {}
    for arch in network_names(cfg):
        vals = [metric(methods[f"{arch}-seed-{s}"]) for s in cfg.train.seeds if f"{arch}-seed-{s}" in methods]
        if vals:
            out[arch] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "n": len(vals)}
    return out


def _public(methods: dict[str, Scores]) -> dict[str, Scores]:
    """The methods as tables show them, the reference first (a network's seeds folded into its mean)."""
    names = sorted((m for m in methods if "-seed-" not in m), key=lambda m: m != EXPORTED_MODEL)
    return {m: methods[m] for m in names}


def aggregate_protocol(cfg: ExperimentConfig, species: list[str], out: Path) -> dict:
    """The CV, LOSO and unsurveyed tables from the folds on disk (points, seed spread, paired intervals)."""
    assert cfg.protocol is not None
    n_s = len(species)
    fractions = tuple(cfg.eval.success_fractions)
    results: dict[str, Any] = {"version": PROTOCOL_VERSION, "reference": EXPORTED_MODEL, "species": species}
    if (out / "folds.json").exists():
        folds = json.loads((out / "folds.json").read_text(encoding="utf-8"))
        results["folds"] = {k: v for k, v in folds.items() if k != "block_fold"}
    cv_dirs = _stage_dirs(out, "cv-")
    if cv_dirs:
        cv: dict[str, Any] = {"folds": [d.name for d in cv_dirs], "regimes": {}}
        for regime in REGIMES:
            methods = _method_scores(cv_dirs, regime, n_s, cfg)
            shown = _public(methods)
            cv["regimes"][regime] = {
                "auprc": {m: _mean_auprc(s) for m, s in shown.items()},
                "success": {m: _success(s, fractions) for m, s in shown.items()},
                "dice": {m: _crossfit_dice(s, cv_dirs, regime, m, n_s, cfg) for m, s in shown.items()},
                "seeds": _seed_spread(cfg, methods, _mean_auprc),
                "compare": _compare(cfg, shown, EXPORTED_MODEL) if EXPORTED_MODEL in shown else {},
                "units": int(len(np.unique(np.concatenate([s[2] for s in next(iter(shown.values())).values()])))),
                "positives": int(sum(int(s[1].sum()) for s in next(iter(shown.values())).values())),
            }
        cv["calibration"] = {regime: _calibration(_method_scores(cv_dirs, regime, n_s, cfg)[EXPORTED_MODEL])
                             for regime in REGIMES if EXPORTED_MODEL in network_names(cfg)}
        cv["tuned"] = {d.name: json.loads((d / "fold.json").read_text(encoding="utf-8"))["tuned"] for d in cv_dirs}
        if EXPORTED_MODEL in network_names(cfg) and len(cv_dirs) >= 2:
            cv["calibration_fit"] = _fit_calibration(cfg, cv_dirs, species)
        results["cv"] = cv
    loso_dirs = _stage_dirs(out, "loso-")
    if loso_dirs:
        results["loso"] = _aggregate_loso(cfg, loso_dirs, n_s)
        if EXPORTED_MODEL in network_names(cfg) and len(loso_dirs) >= 2:
            results["loso"]["calibration_fit"] = _fit_calibration(cfg, loso_dirs, species, HELD_OUT)
    uns = _stage_dirs(out, "unsurveyed")
    if uns:
        methods = _method_scores(uns, HELD_OUT, n_s, cfg)
        shown = _public(methods)
        results["unsurveyed"] = {
            "auprc": {m: _mean_auprc(s) for m, s in shown.items()},
            "success": {m: _success(s, (0.01, 0.05, 0.1, 0.2)) for m, s in shown.items()},
            "seeds": _seed_spread(cfg, methods, _mean_auprc),
            "compare": _compare(cfg, shown, EXPORTED_MODEL) if EXPORTED_MODEL in shown else {},
            "compare_top10": _compare_success(cfg, shown, EXPORTED_MODEL, 0.1) if EXPORTED_MODEL in shown else {},
            "positives": int(sum(int(s[1].sum()) for s in next(iter(shown.values())).values())),
            "cells": int(next(iter(next(iter(shown.values())).values()))[1].size),
        }
    return results


#: The other run's exported model in a comparison of two runs (:func:`against_run`).
AGAINST = "other"


def against_run(cfg: ExperimentConfig, species: list[str], out: Path, results: dict, other: Path) -> dict:
    """The run's exported model against another protocol run's, on the same folds: paired 95% intervals.

    ``out`` is this run's protocol folder and ``results`` its aggregate (:func:`aggregate_protocol`); ``other``
    is the other run's folder (``m3 evaluate`` wrote its metrics.json). Leave-one-state-out pairs the states
    (each run's per-state mean AUPRC); cross-validation and the unsurveyed check pair the blocks or states of
    the pooled scores, and need the other run's score files on disk (a stage without them is left out, and
    ``missing`` says so). Both runs must have the same folds, sealed blocks and held-out states.
    """
    from model.config import load_config
    from model.stats import paired_bootstrap_units

    assert cfg.protocol is not None
    theirs = other / "protocol"
    metrics_path = other / "metrics.json"
    for path in (theirs / "folds.json", metrics_path, other / "config.yaml"):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: --against takes a protocol run that m3 evaluate has reported")
    if (theirs / "folds.json").read_bytes() != (out / "folds.json").read_bytes():
        raise ValueError(f"{other} was run on other folds or sealed blocks than this run: the two do not pair")
    other_cfg = load_config(other / "config.yaml")
    their_results = json.loads(metrics_path.read_text(encoding="utf-8")).get("protocol", {})
    n_s = len(species)
    found: dict[str, Any] = {"run": str(other), "name": other_cfg.name, "missing": []}

    loso, their_loso = results.get("loso"), their_results.get("loso")
    if loso and their_loso:
        states = [s for s in loso["states"] if EXPORTED_MODEL in their_loso["per_state"].get(s, {})]
        if states != loso["states"]:
            raise ValueError(f"{other} holds out other states ({', '.join(their_loso['states'])}) than this run "
                             f"({', '.join(loso['states'])})")
        values = {EXPORTED_MODEL: np.array([loso["per_state"][s][EXPORTED_MODEL] for s in states]),
                  AGAINST: np.array([their_loso["per_state"][s][EXPORTED_MODEL] for s in states])}
        comp = paired_bootstrap_units(values, EXPORTED_MODEL, n_resamples=cfg.protocol.bootstrap, seed=cfg.eval.seed)
        found["loso"] = {"states": states,
                         "per_state": {s: {"this": float(values[EXPORTED_MODEL][i]), "other": float(values[AGAINST][i])}
                                       for i, s in enumerate(states)},
                         "compare": comp[AGAINST].as_dict(),
                         "states_ahead": int(np.sum(values[EXPORTED_MODEL] > values[AGAINST]))}

    def pooled(stage: str, regimes: list[str]) -> dict | None:
        mine = _stage_dirs(out, stage)
        their = [theirs / d.name for d in mine]
        files = [d / "scores" / f"{EXPORTED_MODEL}-seed-{s}-{r}.npz" for d in their for r in regimes
                 for s in other_cfg.train.seeds]
        if not mine or any(not f.is_file() for f in files):
            found["missing"].append(stage.rstrip("-"))
            return None
        table = {}
        for regime in regimes:
            pair = {EXPORTED_MODEL: _method_scores(mine, regime, n_s, cfg)[EXPORTED_MODEL],
                    AGAINST: _method_scores(their, regime, n_s, other_cfg)[EXPORTED_MODEL]}
            table[regime] = {"compare": _compare(cfg, pair, EXPORTED_MODEL)[AGAINST]}
            if regime == HELD_OUT:
                table[regime]["compare_top10"] = _compare_success(cfg, pair, EXPORTED_MODEL, 0.1)[AGAINST]
        return table

    if results.get("cv"):
        cv = pooled("cv-", list(results["cv"]["regimes"]))
        if cv is not None:
            found["cv"] = cv
    if results.get("unsurveyed"):
        uns = pooled("unsurveyed", [HELD_OUT])
        if uns is not None:
            found["unsurveyed"] = uns[HELD_OUT]
    return found


def _fit_calibration(cfg: ExperimentConfig, dirs: list[Path], species: list[str], regime: str | None = None) -> dict:
    """The exported model's calibration, fitted and chosen on held-out predictions.

    The CV folds' region-hidden predictions by default, or a stage's own regime (``held_out``: leave one state
    out, each state a fold).
    """
    from model.calibration import CALIBRATION_REGIME, choose_and_fit, fold_pairs

    n_s, regime = len(species), regime or CALIBRATION_REGIME
    return choose_and_fit(fold_pairs(
        dirs, lambda d: _method_scores([d], regime, n_s, cfg)[EXPORTED_MODEL]), species, regime)


def _calibration(scores: Scores, bins: int = 10) -> dict:
    """Reliability of predicted probabilities over every species' scored cells: bins, ECE, overall rates."""
    p = np.concatenate([sc for sc, _, _ in scores.values()]).astype(np.float64)
    y = np.concatenate([lb for _, lb, _ in scores.values()]).astype(np.float64)
    which = np.clip((p * bins).astype(int), 0, bins - 1)
    count = np.bincount(which, minlength=bins).astype(float)
    pred = np.bincount(which, weights=p, minlength=bins)
    obs = np.bincount(which, weights=y, minlength=bins)
    full = count > 0
    mean_pred, mean_obs = pred[full] / count[full], obs[full] / count[full]
    ece = float(np.sum(count[full] / max(count.sum(), 1.0) * np.abs(mean_pred - mean_obs)))
    return {"ece": ece, "bin_predicted": mean_pred.tolist(), "bin_observed": mean_obs.tolist(),
            "bin_count": count[full].astype(int).tolist(), "mean_predicted": float(p.mean()) if p.size else None,
            "observed": float(y.mean()) if y.size else None}


def _aggregate_loso(cfg: ExperimentConfig, dirs: list[Path], n_s: int) -> dict:
    """Per state, per method mean AUPRC; the mean over states with intervals from resampling states."""
    from model.stats import paired_bootstrap_units

    assert cfg.protocol is not None
    per_state: dict[str, dict[str, float]] = {}
    seeds: dict[str, dict] = {}
    for d in dirs:
        methods = _method_scores([d], HELD_OUT, n_s, cfg)
        state = d.name.removeprefix("loso-")
        per_state[state] = {m: _mean_auprc(s) for m, s in _public(methods).items()}
        seeds[state] = {m: _mean_auprc(s) for m, s in methods.items() if "-seed-" in m}
    names = list(next(iter(per_state.values())))
    states = list(per_state)
    values = {m: np.array([per_state[s][m] for s in states], dtype=float) for m in names}
    compare, ahead = {}, {}
    if EXPORTED_MODEL in values:
        comps = paired_bootstrap_units(values, EXPORTED_MODEL, n_resamples=cfg.protocol.bootstrap, seed=cfg.eval.seed)
        compare = {m: c.as_dict() for m, c in comps.items()}
        ahead = {m: int(np.sum(values[EXPORTED_MODEL] > values[m])) for m in names if m != EXPORTED_MODEL}
    seed_means = {}
    for arch in network_names(cfg):
        per_seed = [np.nanmean([seeds[s].get(f"{arch}-seed-{k}", np.nan) for s in states]) for k in cfg.train.seeds]
        per_seed = [v for v in per_seed if np.isfinite(v)]
        if per_seed:
            seed_means[arch] = {"mean": float(np.mean(per_seed)), "std": float(np.std(per_seed)), "n": len(per_seed)}
    return {"states": states, "per_state": per_state,
            "mean": {m: float(np.nanmean(values[m])) for m in names}, "compare": compare,
            "states_ahead": ahead, "seeds": seed_means}


def _compare_success(cfg: ExperimentConfig, methods: dict[str, Scores], reference: str, fraction: float) -> dict:
    """Paired bootstrap interval of the difference in the share of positives in the top ``fraction`` of cells."""
    from model.stats import compare_from_resamples as stats_compare
    from model.stats import draw_counts

    assert cfg.protocol is not None
    units = np.unique(np.concatenate([s[2] for s in methods[reference].values()]))
    weights = draw_counts(len(units), cfg.protocol.bootstrap, cfg.eval.seed)
    point = {m: _success(s, (fraction,))[f"{fraction:g}"] for m, s in methods.items()}
    boot = {m: _resampled_success(scores, units, weights, fraction) for m, scores in methods.items()}
    return {m: stats_compare(point[reference], point[m], boot[reference] - boot[m], cfg.protocol.bootstrap).as_dict()
            for m in methods if m != reference}


def _resampled_success(scores: Scores, unit_ids: np.ndarray, weights: np.ndarray, fraction: float,
                       bins: int = 2048) -> np.ndarray:
    """(R,) mean over species of the share of positives in the top ``fraction`` of cells, per row of unit weights.

    Cells are binned by rank (per-unit histograms of cells and positives), so a resample is two matrix
    products; the bin at the cut counts pro rata.
    """
    from model.stats import rank_bins

    n_units, rows = len(unit_ids), np.arange(len(weights))
    total = np.zeros(len(weights))
    count = np.zeros(len(weights))
    for sc, lb, un in scores.values():
        if lb.sum() == 0:
            continue
        key = np.searchsorted(unit_ids, un) * bins + rank_bins(sc.astype(np.float64), bins)
        cells = np.bincount(key, minlength=n_units * bins).reshape(n_units, bins)
        pos = np.bincount(key, weights=lb.astype(np.float64), minlength=n_units * bins).reshape(n_units, bins)
        c, p = weights @ cells, weights @ pos  # (R, bins)
        cum_c, cum_p = np.cumsum(c, axis=1), np.cumsum(p, axis=1)
        cut = fraction * cum_c[:, -1]
        i = np.minimum((cum_c < cut[:, None]).sum(axis=1), bins - 1)
        before_c = np.where(i > 0, cum_c[rows, i - 1], 0.0)
        before_p = np.where(i > 0, cum_p[rows, i - 1], 0.0)
        part = np.divide(cut - before_c, c[rows, i], out=np.zeros(len(rows)), where=c[rows, i] > 0)
        share = np.divide(before_p + part * p[rows, i], cum_p[:, -1], out=np.full(len(rows), np.nan),
                          where=cum_p[:, -1] > 0)
        ok = np.isfinite(share)
        total[ok] += share[ok]
        count += ok
    return np.divide(total, count, out=np.full(len(rows), np.nan), where=count > 0)


def _crossfit_dice(scores: Scores, dirs: list[Path], regime: str, method: str, n_s: int,
                   cfg: ExperimentConfig) -> float:
    """Mean Dice over species, each fold thresholded at the Dice-best threshold of the other folds' cells."""
    per_fold = []
    for d in dirs:
        if method in network_names(cfg):
            paths = [d / "scores" / f"{method}-seed-{s}-{regime}.npz" for s in cfg.train.seeds]
            per_fold.append(average([load_scores(p, n_s) for p in paths if p.exists()]))
        else:
            per_fold.append(load_scores(d / "scores" / f"{method}-{regime}.npz", n_s))
    values = []
    for s in range(n_s):
        tp = fp = fn = 0.0
        for k, fold in enumerate(per_fold):
            others = [f for j, f in enumerate(per_fold) if j != k]
            if not others:
                continue
            sc = np.concatenate([o[s][0] for o in others]).astype(np.float64)
            threshold = best_threshold(sc, np.concatenate([o[s][1] for o in others]))
            pred, y = fold[s][0] >= threshold, fold[s][1].astype(bool)
            tp, fp, fn = tp + float(np.sum(pred & y)), fp + float(np.sum(pred & ~y)), fn + float(np.sum(~pred & y))
        if tp + fn > 0:
            values.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(values)) if values else float("nan")
