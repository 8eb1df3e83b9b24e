"""Calibrated probabilities: model.json's per-species monotone map, applied by every evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from backend.inference.calibration import Calibration, CalibrationError, SpeciesMap
from backend.inference.contract import ModelContractError, load_model_card
from backend.inference.cube_inputs import CubeSource
from backend.inference.engine import InferenceEngine
from backend.inference.runner import MapEvaluator

from .synthetic import SPECIES, small_grid, write_synthetic_cube, write_tiny_model


def test_platt_identity_is_the_identity_and_maps_are_increasing() -> None:
    p = np.linspace(0.001, 0.999, 999, dtype=np.float32)
    np.testing.assert_allclose(SpeciesMap(1.0, 1.0, 0.0).apply(p), p, atol=1e-5)
    for m in (SpeciesMap(0.5, 0.5, -2.0), SpeciesMap(1.2, 0.3, -1.0), SpeciesMap(0.0, 2.0, 0.5)):
        q = m.apply(p)
        assert (np.diff(q) > 0).all() and ((q > 0) & (q < 1)).all()
    # the closed form: sigmoid(a ln p - b ln(1 - p) + c)
    a, b, c = 0.7, 1.3, -0.4
    expected = 1 / (1 + np.exp(-(a * np.log(p.astype(np.float64)) - b * np.log1p(-p.astype(np.float64)) + c)))
    np.testing.assert_allclose(SpeciesMap(a, b, c).apply(p), expected, rtol=1e-4)


def test_in_place_calibration_keeps_no_prediction_as_no_prediction() -> None:
    prob = np.array([[[0.1, np.nan], [0.5, 0.9]]], dtype=np.float32)
    cal = Calibration.parse({"method": "platt", "species": {"gold": {"a": 0.5, "b": 0.5, "c": -1}}}, ("gold",))
    assert cal is not None
    out = cal.apply(prob)
    assert out is prob and np.isnan(out[0, 0, 1]) and (np.diff(out[0].ravel()[[0, 2, 3]]) > 0).all()


@pytest.mark.parametrize(("raw", "message"), [
    ({"species": {"gold": {"a": 1, "b": 1, "c": 0}}}, "must map every species"),
    ({"species": {"gold": {"a": 1, "b": 1, "c": 0}, "zinc": {"a": 1, "c": 0}}}, "needs numbers a, b, c"),
    ({"species": {"gold": {"a": 1, "b": 1, "c": 0}, "zinc": {"a": -1, "b": 1, "c": 0}}}, "must be >= 0"),
    ({"species": {"gold": {"a": 0, "b": 0, "c": 0}, "zinc": {"a": 1, "b": 1, "c": 0}}}, "a \\+ b > 0"),
    ({"species": {"gold": {"a": 1, "b": 1, "c": "nan"}, "zinc": {"a": 1, "b": 1, "c": 0}}}, "finite"),
])
def test_malformed_calibrations_are_refused(raw: dict, message: str) -> None:
    with pytest.raises(CalibrationError, match=message):
        Calibration.parse(raw, ("gold", "zinc"))


def test_the_evaluator_serves_calibrated_probabilities(tmp_path: Path) -> None:
    write_synthetic_cube(tmp_path / "cube", small_grid(rows=40, cols=48))
    arrays = CubeSource.open(tmp_path / "cube").read()
    folder = write_tiny_model(tmp_path / "model")
    raw_engine = InferenceEngine(load_model_card(folder))
    card = json.loads((folder / "model.json").read_text())
    maps = {"gold": {"a": 0.4, "b": 0.4, "c": -1.5}, "zinc": {"a": 1.5, "b": 0.2, "c": 0.3}}
    assert list(maps) == list(SPECIES)
    (folder / "model.json").write_text(json.dumps(dict(card, calibration={"method": "beta", "species": maps})))
    engine = InferenceEngine(load_model_card(folder))
    assert engine.card.calibration is not None and engine.card.public()["calibration"] == "beta"
    mask = np.zeros((2, *arrays.shape), dtype=bool)
    mask[:, 10:30, 10:30] = True
    plain, calibrated = MapEvaluator(raw_engine, arrays, whole=True), MapEvaluator(engine, arrays, whole=True)
    try:
        p, q = plain(mask), calibrated(mask)
    finally:
        plain.close()
        calibrated.close()
    for s, name in enumerate(SPECIES):
        np.testing.assert_allclose(q[s], SpeciesMap(**maps[name]).apply(p[s]), atol=1e-6)
    assert not np.allclose(p, q)
    (folder / "model.json").write_text(json.dumps(dict(card, calibration={"species": {"gold": maps["gold"]}})))
    with pytest.raises(ModelContractError, match="must map every species"):
        load_model_card(folder)


def test_unsurveyed_cells_take_their_own_map() -> None:
    raw = {"method": "platt", "species": {"gold": {"a": 1.0, "b": 1.0, "c": 0.0}},
           "unsurveyed": {"method": "beta", "species": {"gold": {"a": 0.5, "b": 1.5, "c": -3.0}}}}
    cal = Calibration.parse(raw, ("gold",))
    assert cal is not None and cal.unsurveyed is not None
    prob = np.random.default_rng(0).random((1, 6, 8)).astype(np.float32)
    surveyed = np.zeros((6, 8), dtype=bool)
    surveyed[:, :4] = True
    before = prob.copy()
    out = cal.apply(prob, surveyed)
    np.testing.assert_allclose(out[0][surveyed], before[0][surveyed], atol=1e-5)  # the identity inside
    np.testing.assert_allclose(out[0][~surveyed], SpeciesMap(0.5, 1.5, -3.0).apply(before[0][~surveyed]), atol=1e-6)
    # without a coverage mask every cell takes the surveyed map
    np.testing.assert_allclose(cal.apply(before.copy()), before, atol=1e-5)
