"""MapEvaluator: the whole-grid pass (used on a GPU) agrees with sliding windows; the ensemble's threaded sums."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backend.inference.contract import load_model_card
from backend.inference.cube_inputs import CubeSource
from backend.inference.engine import InferenceEngine
from backend.inference.ensemble import run_ensemble
from backend.inference.masks import DEMO_CONFIG, MaskSchedule, draw_round
from backend.inference.runner import MapEvaluator
from model.config import load_config

from .synthetic import small_grid, write_synthetic_cube, write_tiny_model

MASKING = load_config(DEMO_CONFIG).masking


def _mask(seed: int, shape: tuple[int, int]) -> np.ndarray:
    """A hide mask [2, H, W]: one evaluation's regions for both species, and gold hidden in a band as well."""
    hidden = np.repeat(draw_round((seed,), shape, MASKING).region(0)[None], 2, axis=0)
    hidden[0, : shape[0] // 3] = True
    return hidden


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("evaluator")
    grid = small_grid(rows=90, cols=125)  # not multiples of the model's 8: the whole pass pads
    write_synthetic_cube(root / "cube", grid)
    cube = CubeSource.open(root / "cube")
    engine = InferenceEngine(load_model_card(write_tiny_model(root / "model", multiple=8)))
    return engine, cube.read()


def test_whole_grid_pass_matches_sliding_windows(setup) -> None:
    engine, arrays = setup
    sliding = MapEvaluator(engine, arrays, window=32, overlap=8, batch=2)
    whole = MapEvaluator(engine, arrays, whole=True)
    assert not engine.on_gpu
    try:
        for seed in range(3):
            mask = _mask(seed, arrays.shape)
            a, b = sliding(mask), whole(mask)
            assert b.shape == a.shape == (2, *arrays.shape)
            assert np.isfinite(b).all()
            np.testing.assert_allclose(b, a, atol=1e-6)  # a 1x1 model: windows and one pass agree
            # the hide mask reached the model: hidden cells differ from a pass that hides nothing
            none = whole(np.zeros_like(mask))
            hidden_present = mask & (arrays.labels[[0, 1]] > 0)
            assert hidden_present.any()
            assert (np.abs(none - b)[hidden_present] > 1e-3).all()
            assert np.array_equal(none[~mask], b[~mask])
    finally:
        sliding.close()
        whole.close()


def test_ensemble_sums_do_not_depend_on_threads(setup) -> None:
    engine, arrays = setup
    evaluate = MapEvaluator(engine, arrays, whole=True)
    try:
        schedule = MaskSchedule(arrays.shape, MASKING, rounds=3)
        one = run_ensemble(evaluate, engine.card.species, schedule, threads=1)
        many = run_ensemble(evaluate, engine.card.species, schedule, threads=5)
    finally:
        evaluate.close()
    assert np.array_equal(one.count, many.count)
    np.testing.assert_array_equal(one.mean, many.mean)
    np.testing.assert_array_equal(one.std, many.std)
    assert one.count.min() == 3 and (one.std >= 0).all() and ((one.mean >= 0) & (one.mean <= 1)).all()


def test_whole_pass_rejects_a_wrong_buffer(setup, tmp_path: Path) -> None:
    from backend.inference.cube_inputs import assemble_inputs

    engine, arrays = setup
    with pytest.raises(ValueError, match="input buffer has shape"):
        assemble_inputs(engine.card, arrays, np.zeros((2, *arrays.shape), dtype=bool),
                        out=np.zeros((3, 5, 5), dtype=np.float32))


def test_device_resident_pass_matches_the_plain_pass(setup) -> None:
    """The wrapped graph (constant inputs bound once, only the hide mask fed) gives the same probabilities."""
    from backend.inference import device_map

    engine, arrays = setup
    assert device_map.supported(engine.card)
    plain = MapEvaluator(engine, arrays, whole=True, resident=False)
    resident = MapEvaluator(engine, arrays, whole=True, resident=True)
    assert plain.resident is None and resident.resident is not None
    try:
        for seed in range(3):
            mask = _mask(seed, arrays.shape)
            np.testing.assert_allclose(resident(mask), plain(mask), atol=1e-6)
    finally:
        plain.close()
        resident.close()


def test_device_resident_pass_needs_the_export_channel_order(setup) -> None:
    import dataclasses

    from backend.inference import device_map

    engine, _ = setup
    card = engine.card
    shuffled = dataclasses.replace(card, channels=(card.channels[1], card.channels[0], *card.channels[2:]))
    assert not device_map.supported(shuffled)


def test_whole_pass_out_of_memory_falls_back_to_windows(setup, monkeypatch, caplog) -> None:
    from backend.inference.device_map import DeviceMapRunner

    engine, arrays = setup
    mask = _mask(7, arrays.shape)
    sliding = MapEvaluator(engine, arrays, window=32, overlap=8)
    expected = sliding(mask)

    def no_memory(self, hidden):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running Conv "
                           "node. Failed to allocate memory for requested buffer of size 2755375360")

    monkeypatch.setattr(DeviceMapRunner, "__call__", no_memory)
    evaluate = MapEvaluator(engine, arrays, window=32, overlap=8, whole=True, resident=True)
    with caplog.at_level("WARNING"):
        got = evaluate(mask)
    assert "falling back to sliding windows" in caplog.text
    assert not evaluate.whole and evaluate.resident is None
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(evaluate(mask), expected, atol=1e-6)  # and stays on windows

    def broken(self, hidden):
        raise ValueError("some other failure")

    monkeypatch.setattr(DeviceMapRunner, "__call__", broken)
    other = MapEvaluator(engine, arrays, whole=True, resident=True)
    with pytest.raises(ValueError, match="some other failure"):
        other(mask)
    for e in (sliding, evaluate, other):
        e.close()


@pytest.fixture(scope="module")
def unknown_setup(tmp_path_factory: pytest.TempPathFactory):
    """The synthetic cube (its 16 right-hand columns unsurveyed) and a tiny model that reads them as unknown."""
    root = tmp_path_factory.mktemp("unknown")
    write_synthetic_cube(root / "cube", small_grid(rows=90, cols=125))
    card = load_model_card(write_tiny_model(root / "model", multiple=8, unsurveyed="unknown"))
    assert card.unsurveyed == "unknown" and str(card.channels[-1]) == "surveyed:coverage"
    return InferenceEngine(card), CubeSource.open(root / "cube").read()


def test_a_model_that_reads_unsurveyed_cells_as_unknown_sees_them_hidden_whatever_the_mask(unknown_setup) -> None:
    """Unsurveyed cells without a record are hidden in every evaluation; the three passes agree on it."""
    engine, arrays = unknown_setup
    unsurveyed_empty = ~arrays.coverage[None] & (arrays.labels[[0, 1]] == 0)
    assert unsurveyed_empty.any() and (arrays.coverage.any())
    plain = MapEvaluator(engine, arrays, whole=True, resident=False)
    resident = MapEvaluator(engine, arrays, whole=True, resident=True)
    sliding = MapEvaluator(engine, arrays, window=32, overlap=8, batch=2)
    try:
        everything = plain(np.ones((2, *arrays.shape), dtype=bool))
        nothing = plain(np.zeros((2, *arrays.shape), dtype=bool))
        # with nothing hidden, unsurveyed empty cells still read as hidden: same output as hiding everything
        np.testing.assert_allclose(nothing[unsurveyed_empty], everything[unsurveyed_empty], atol=1e-6)
        # surveyed cells with nothing hidden are not hidden
        assert (np.abs(nothing - everything)[:, arrays.coverage] > 1e-3).all()
        for seed in range(2):
            mask = _mask(seed, arrays.shape)
            a = plain(mask)
            np.testing.assert_allclose(a[unsurveyed_empty], everything[unsurveyed_empty], atol=1e-6)
            np.testing.assert_allclose(resident(mask), a, atol=1e-6)
            np.testing.assert_allclose(sliding(mask), a, atol=1e-6)
    finally:
        plain.close()
        resident.close()
        sliding.close()


def test_a_model_card_must_match_its_unsurveyed_mode_and_channels(tmp_path: Path) -> None:
    import json

    from backend.inference.contract import ModelContractError

    folder = write_tiny_model(tmp_path / "m", unsurveyed="unknown")
    raw = json.loads((folder / "model.json").read_text())
    for bad, message in ((dict(raw, unsurveyed="absent"), "must not have the surveyed:coverage channel"),
                         (dict(raw, unsurveyed="maybe"), "unsurveyed is 'maybe'")):
        (folder / "model.json").write_text(json.dumps(bad))
        with pytest.raises(ModelContractError, match=message):
            load_model_card(folder)
