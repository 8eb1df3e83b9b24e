"""The evaluation protocol: sealed test blocks never reach training or tuning; LOSO removes a state's survey records."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from model.config import config_from_dict
from model.cube_data import CubeArrays
from model.masking import MaskGenerator
from model.patches import PatchSampler, case_inputs
from model.protocol import (
    against_run,
    aggregate_protocol,
    folds_of,
    loso_stage,
    run_protocol,
    sealed_view,
    tile_cases,
    unsurveyed_stage,
)
from model.splits import BUFFER, CONTEXT, TRAIN, UNKNOWN, VAL, fold_split, protocol_folds

SPECIES = ["gold", "silver", "copper"]
STATES = ["AA", "BB", "CC", "DD"]


def protocol_cube(seed: int = 0, size: int = 128) -> CubeArrays:
    """Four quadrant 'states': AA and BB (left) surveyed, CC and DD (right) not; national records everywhere."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    elevation = np.sin(6 * xx) + np.cos(5 * yy) + 0.1 * rng.standard_normal((size, size))
    roughness = np.abs(np.gradient(elevation)[0]) * 10
    half = size // 2
    state = np.zeros((size, size), dtype=np.uint8)
    state[:half, :half], state[half:, :half], state[:half, half:], state[half:, half:] = 1, 2, 3, 4
    coverage = state <= 2
    p = 0.06 * (elevation > 0.3) + 0.01
    survey = (rng.random((3, size, size)) < p[None]) & coverage[None]
    national = rng.random((3, size, size)) < 0.25 * p[None]
    cov = np.stack([elevation, roughness]).astype(np.float32)
    return CubeArrays(SPECIES, ["elevation", "roughness"], (survey | national).astype(np.uint8), coverage, cov,
                      np.ones_like(cov, dtype=np.uint8), cube_sha256="1" * 64,
                      survey_labels=survey.astype(np.uint8), national_labels=national.astype(np.uint8),
                      state_index=state, state_codes=STATES, covered_states=["AA", "BB"],
                      conus=np.ones((size, size), dtype=bool))


def protocol_config(tiny: dict, **protocol) -> object:
    """The tiny model configuration with a protocol section (every stage, every baseline)."""
    raw = json.loads(json.dumps(tiny))
    raw["train"]["select_every"] = 2  # validation selection is part of what the test must not reach
    raw["eval"]["kriging_models"] = ["spherical", "exponential"]
    raw["protocol"] = {"folds": 3, "test_fraction": 0.2, "test_seed": 7, "cv_folds": [0, 1],
                       "loso_states": ["AA"], "bootstrap": 50, "tile_cells": 32, "boosted_cells": 400,
                       "tune_windows": 3} | protocol
    return config_from_dict(raw)


def test_folds_partition_covered_blocks() -> None:
    cube = protocol_cube()
    folds = protocol_folds(cube.coverage, 16, 1, 0.05, 0.2, 7, 3)
    inside = folds.fold >= 0
    sealed = folds.fold == folds.SEALED
    assert sealed.sum() == round(0.2 * (inside | sealed).sum())
    sizes = [int((folds.fold == k).sum()) for k in range(3)]
    assert max(sizes) - min(sizes) <= 1
    again = protocol_folds(cube.coverage, 16, 1, 0.05, 0.2, 7, 3)
    assert np.array_equal(folds.fold, again.fold)
    assert not np.array_equal(folds.fold, protocol_folds(cube.coverage, 16, 1, 0.05, 0.2, 8, 3).fold)
    split = fold_split(folds, 1, seal=True)
    cells = split.cell_split
    assert np.all(cells[folds.sealed_cells()] == UNKNOWN)
    assert set(np.unique(cells[~folds.sealed_cells()])) <= {TRAIN, VAL, BUFFER, CONTEXT}
    # a train cell next to a sealed block is a buffer cell
    grown = np.zeros_like(cells, dtype=bool)
    grown[1:, :] |= folds.sealed_cells()[:-1, :]
    assert not np.any((cells == TRAIN) & grown)
    with pytest.raises(ValueError, match="out of range"):
        fold_split(folds, 3)


def test_sealed_view_removes_test_labels(tiny_raw: dict) -> None:
    cube = protocol_cube()
    cfg = protocol_config(tiny_raw)
    folds = folds_of(cfg, cube)
    view = sealed_view(cube, folds)
    sealed = folds.sealed_cells()
    assert sealed.any()
    for layer in (view.labels, view.survey_labels, view.national_labels):
        assert layer is not None and not layer[:, sealed].any()
    assert not view.coverage[sealed].any()
    assert cube.labels[:, sealed].any()  # the original is untouched


def _perturb_sealed(cube: CubeArrays, cfg, seed: int) -> CubeArrays:  # noqa: ANN001
    """The cube with every label of the sealed test blocks redrawn at random."""
    sealed = folds_of(cfg, cube).sealed_cells()
    rng = np.random.default_rng(seed)

    def redraw(layer: np.ndarray) -> np.ndarray:
        out = layer.copy()
        out[:, sealed] = rng.random((layer.shape[0], int(sealed.sum()))) < 0.5
        return out

    survey, national = redraw(cube.survey_labels), redraw(cube.national_labels)
    return dataclasses.replace(cube, labels=survey | national, survey_labels=survey, national_labels=national)


def _fold_outputs(run: Path) -> dict[str, object]:
    """Every score array, trained weight and tuning choice a protocol run wrote, by relative path."""
    out: dict[str, object] = {}
    for path in sorted((run / "protocol").rglob("*")):
        rel = str(path.relative_to(run))
        if path.suffix == ".npz":
            with np.load(path) as z:
                out[rel] = {k: z[k].copy() for k in z.files}
        elif path.name == "final.pt":
            state = torch.load(path, weights_only=False)["model"]
            out[rel] = {k: v.numpy().copy() for k, v in state.items()}
        elif path.name == "fold.json":
            out[rel] = json.loads(path.read_text())
    return out


def _same(a: object, b: object) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b, equal_nan=True)
    return a == b


def test_no_test_block_cell_reaches_training_tuning_thresholds_or_selection(tmp_path: Path, tiny_raw: dict) -> None:
    """Two whole protocol runs whose cubes differ only in the sealed blocks' labels write identical outputs.

    Training batches, validation selection (select_every), the baselines' tuning and fitting, the
    cross-fitted thresholds and every score go through the same data path, so any read of a sealed
    label would show as a difference.
    """
    cfg = protocol_config(tiny_raw)
    cube = protocol_cube()
    other = _perturb_sealed(cube, cfg, seed=1)
    assert not np.array_equal(cube.labels, other.labels)
    first = run_protocol(cfg, cube, tmp_path / "a", progress=False)
    second = run_protocol(cfg, other, tmp_path / "b", progress=False)
    a, b = _fold_outputs(tmp_path / "a"), _fold_outputs(tmp_path / "b")
    assert a.keys() == b.keys() and len(a) > 20
    assert any(k.endswith("final.pt") for k in a)
    assert list((tmp_path / "a" / "protocol").rglob("selection.csv"))  # validation selection ran in the folds
    different = [k for k in a if not _same(a[k], b[k])]
    assert different == []
    assert json.dumps(first, sort_keys=True, default=str) == json.dumps(second, sort_keys=True, default=str)
    assert {"cv", "loso", "unsurveyed"} <= set(first)
    # ... while the sealed labels themselves do matter when scored: the training batches carry none of them
    split = fold_split(folds_of(cfg, cube), 0, seal=True)
    sampler = PatchSampler(sealed_view(cube, folds_of(cfg, cube)), split,
                           MaskGenerator(cfg.masking, 3), cfg.data.patch_cells)
    sealed = folds_of(cfg, cube).sealed_cells()
    assert sampler.rows.size and not sealed[sampler.rows, sampler.cols].any()


def test_loso_state_survey_records_are_absent_from_inputs_and_labels(tiny_raw: dict) -> None:
    cfg = protocol_config(tiny_raw)
    cube = protocol_cube()
    folds = folds_of(cfg, cube)
    base = sealed_view(cube, folds)
    held = loso_stage(cfg, base, folds, "AA")
    state = cube.state_mask("AA")
    survey_only = (cube.survey_labels > 0) & (cube.national_labels == 0) & state[None]
    assert survey_only.any()
    # labels the model trains on: in the state, the national records only
    assert np.array_equal(held.view.labels[:, state], base.national_labels[:, state])
    assert not held.view.labels[survey_only].any()
    assert not held.view.survey_labels[:, state].any()
    assert not held.view.coverage[state].any()
    # no training target in the state; its cells are hidden except those with a national record
    cells = held.split.cell_split
    assert not np.any(cells[state] == TRAIN)
    visible = state & (base.national_labels.max(axis=0) > 0)
    assert np.all(cells[visible] == CONTEXT) and np.all(cells[state & ~visible] == UNKNOWN)
    rng = np.random.default_rng(0)
    sampler = PatchSampler(held.view, held.split, MaskGenerator(cfg.masking, 3), cfg.data.patch_cells)
    assert not state[sampler.rows, sampler.cols].any()
    for _ in range(20):
        sampler.patch(rng)
    # what the scored tiles show the model: national records in the state, never a survey-only record
    cases = tile_cases(held, 32, 8)
    assert cases and sum(int(c.scored.sum()) for c in cases) == int(held.area.sum()) * 3
    for case in cases:
        (r0, c0), (h, w) = case.origin, case.labels.shape[1:]
        x = case_inputs(held.view, case)
        win = (slice(r0, r0 + h), slice(c0, c0 + w))
        in_state = state[win]
        shown = x[:3][:, in_state]
        assert np.array_equal(shown, base.national_labels[:, win[0], win[1]][:, in_state] * (1 - x[3:6][:, in_state]))
        assert not np.any(shown.astype(bool) & survey_only[:, win[0], win[1]][:, in_state])
    # scored against the survey records
    assert np.array_equal(held.targets[:, held.area], base.survey_labels[:, held.area])


def test_unsurveyed_stage_holds_out_national_records(tiny_raw: dict) -> None:
    cfg = protocol_config(tiny_raw)
    cube = protocol_cube()
    folds = folds_of(cfg, cube)
    base = sealed_view(cube, folds)
    held = unsurveyed_stage(cfg, base, folds)
    outside = ~cube.coverage
    assert not held.view.labels[:, outside].any()
    assert np.array_equal(held.targets[:, held.area], base.labels[:, held.area])
    assert held.targets[:, held.area].any()
    assert np.all(held.split.cell_split[outside] == UNKNOWN)
    assert set(np.unique(held.units[held.area])) == {3, 4}


def test_protocol_resumes_and_reports(tmp_path: Path, tiny_raw: dict) -> None:
    from model.report import protocol_markdown

    cfg = protocol_config(tiny_raw, stages=["cv"], cv_folds=[0], baselines=["neighbourhood", "roughness"])
    cube = protocol_cube()
    first = run_protocol(cfg, cube, tmp_path, progress=False)
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "protocol").rglob("*.npz")}
    again = run_protocol(cfg, cube, tmp_path, progress=False)
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)
    assert stamp == {p: p.stat().st_mtime_ns for p in (tmp_path / "protocol").rglob("*.npz")}
    r = first["cv"]["regimes"]["region"]
    assert list(r["auprc"])[0] == "unet" and {"vit", "neighbourhood", "roughness"} <= set(r["auprc"])
    for comp in r["compare"].values():
        assert comp["lo"] <= comp["diff"] + 1e-9 or comp["verdict"] in {"ahead", "behind", "level"}
        assert comp["verdict"] == ("ahead" if comp["lo"] > 0 else "behind" if comp["hi"] < 0 else "level")
    text = protocol_markdown(first, cfg, cube, [])
    assert "## Model card" in text and "## Spatial cross-validation" in text and "Sealed test scorings" in text
    other = protocol_config(tiny_raw, stages=["cv"], cv_folds=[0], baselines=["neighbourhood"])
    with pytest.raises(ValueError, match="another configuration or cube"):
        run_protocol(other, cube, tmp_path, progress=False)
    assert aggregate_protocol(cfg, SPECIES, tmp_path / "protocol")["cv"]["folds"] == ["cv-0"]


def test_units_split_a_run_between_processes(tmp_path: Path, tiny_raw: dict) -> None:
    from model.protocol import protocol_units

    cfg = protocol_config(tiny_raw, stages=["cv", "loso"], cv_folds=[0, 1], loso_states=["AA", "BB"],
                          baselines=["roughness"])
    assert protocol_units(cfg, ["AA", "BB"]) == ["cv-0", "cv-1", "loso-AA", "loso-BB"]
    assert protocol_units(cfg, ["AA", "BB"], ("loso",)) == ["loso-AA", "loso-BB"]
    cube = protocol_cube()
    with pytest.raises(ValueError, match="loso-ZZ not in this protocol"):
        run_protocol(cfg, cube, tmp_path, progress=False, units=("loso-ZZ",))
    run_protocol(cfg, cube, tmp_path, progress=False, units=("cv-1", "loso-BB"))
    done = sorted(p.parent.name for p in (tmp_path / "protocol").glob("*/fold.json"))
    assert done == ["cv-1", "loso-BB"]


def _report_for_against(cfg, run: Path) -> dict:  # noqa: ANN001
    """What m3 evaluate leaves for a later --against: the aggregate in metrics.json, the configuration."""
    results = aggregate_protocol(cfg, SPECIES, run / "protocol")
    (run / "metrics.json").write_text(json.dumps({"protocol": results}), encoding="utf-8")
    (run / "config.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(cfg.to_dict()))), encoding="utf-8")
    return results


def test_against_pairs_states_and_blocks(tmp_path: Path, tiny_raw: dict) -> None:
    cfg = protocol_config(tiny_raw, stages=["cv", "loso"], cv_folds=[0], loso_states=["AA", "BB"],
                          baselines=["roughness"])
    this, other = tmp_path / "this", tmp_path / "other"
    run_protocol(cfg, protocol_cube(), this, progress=False)
    results = _report_for_against(cfg, this)
    shutil.copytree(this, other)

    same = against_run(cfg, SPECIES, this / "protocol", results, other)
    assert same["missing"] == [] and set(same["cv"]) == set(results["cv"]["regimes"])
    for comp in [same["loso"]["compare"], *(r["compare"] for r in same["cv"].values())]:
        assert comp["diff"] == 0 and comp["lo"] == 0 and comp["hi"] == 0 and comp["verdict"] == "level"
    assert same["loso"]["states"] == ["AA", "BB"] and same["loso"]["states_ahead"] == 0

    # the other run's model a little worse in each state: ahead in both, by the mean of the differences
    metrics = json.loads((other / "metrics.json").read_text(encoding="utf-8"))
    for state in ("AA", "BB"):
        metrics["protocol"]["loso"]["per_state"][state]["unet"] -= 0.01
    (other / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    for npz in (other / "protocol").glob("cv-*/scores/*.npz"):
        npz.unlink()
    worse = against_run(cfg, SPECIES, this / "protocol", results, other)
    assert worse["loso"]["compare"]["diff"] == pytest.approx(0.01) and worse["loso"]["states_ahead"] == 2
    assert worse["loso"]["compare"]["verdict"] == "ahead" and worse["missing"] == ["cv"] and "cv" not in worse

    from model.report import protocol_markdown

    text = protocol_markdown(dict(results, against=worse), cfg, protocol_cube(), [])
    assert "## Against run" in text and "Not compared: cv" in text and "higher in 2 of 2" in text

    folds = json.loads((other / "protocol" / "folds.json").read_text(encoding="utf-8"))
    folds["test_seed"] += 1
    (other / "protocol" / "folds.json").write_text(json.dumps(folds), encoding="utf-8")
    with pytest.raises(ValueError, match="other folds"):
        against_run(cfg, SPECIES, this / "protocol", results, other)
    with pytest.raises(FileNotFoundError, match="m3 evaluate"):
        against_run(cfg, SPECIES, this / "protocol", results, tmp_path / "nowhere")
