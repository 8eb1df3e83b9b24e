import json

import numpy as np
import pytest
import rasterio
import sqlalchemy as sa

from backend.inference.contract import ModelContractError, load_model_card
from backend.inference.cube_inputs import CubeSource
from backend.inference.engine import InferenceEngine
from backend.inference.infill import InfillRequest, run_infill
from backend.inference.reinference import context_cells
from backend.layers.catalog import load_current

from .synthetic import write_tiny_model


def test_published_version_has_cogs_and_is_current(serve_settings, serve_engine, published):
    current = load_current(serve_engine, serve_settings.layers_dir)
    assert current is not None and current.id == published
    assert set(current.layers) == {f"{s}.{k}" for s in ("gold", "zinc")
                                   for k in ("prospectivity", "uncertainty", "discrepancy", "evaluations")}
    from rio_cogeo.cogeo import cog_validate

    for layer_id in current.layers:
        valid, errors, _ = cog_validate(current.path(layer_id))
        assert valid, errors
        with rasterio.open(current.path(layer_id, native=True)) as src:
            assert src.crs.to_epsg() == 5070 and src.shape == (96, 128)
    with rasterio.open(current.path("zinc.discrepancy", native=True)) as src:
        disc = src.read(1)
    assert np.isnan(disc[:, -16:]).all(), "discrepancy outside coverage must be empty"
    assert np.isfinite(disc[:, :-16]).mean() > 0.9
    with rasterio.open(current.path("zinc.prospectivity", native=True)) as src:
        assert np.isfinite(src.read(1)).all(), "prospectivity covers the whole (CONUS) grid"
    with rasterio.open(current.path("gold.evaluations", native=True)) as src:
        assert (src.read(1) == serve_settings.ensemble_masks).all(), "every cell hidden E times"
    with rasterio.open(current.path("gold.uncertainty", native=True)) as src:
        assert np.isfinite(src.read(1)).all() and (src.read(1) >= 0).all()
    assert current.ensemble["evaluations"] == 2 * serve_settings.ensemble_masks
    assert current.ensemble["min_hidden"] == serve_settings.ensemble_masks
    assert not list(serve_settings.layers_dir.glob(".staging-*"))


def test_clusters_list_sites_inside_and_keep_their_size(serve_settings, serve_engine, published):
    with serve_engine.connect() as c:
        rows = c.execute(sa.text("SELECT species, n_sites, sites, mean_score, n_cells, area_km2 FROM clusters "
                                 "WHERE layer_version = :v ORDER BY mean_score DESC"), {"v": published}).all()
        ensemble = c.execute(sa.text("SELECT ensemble FROM layer_versions WHERE id = :v"), {"v": published}).scalar()
    assert rows
    names = {s["name"] for r in rows for s in r.sites}
    assert "Blob Sand and Gravel Pit" in names and "Far Away Mine" not in names
    for r in rows:
        assert r.n_cells >= 4 and r.area_km2 == pytest.approx(r.n_cells * 1.609344 ** 2, rel=1e-6)
    clusters = ensemble["clusters"]
    assert clusters["top_share"] == 0.1 and clusters["site_distance_m"] == 3000.0
    # the tiny model records no input radius: the surveyed-share rule looks at the cell alone
    assert clusters["min_surveyed"] == serve_settings.cluster_min_surveyed and clusters["context_cells"] == 0
    for r in rows:
        assert r.mean_score >= clusters["thresholds"][r.species]


def test_surveyed_square_defaults_to_the_models_widest_input_radius(serve_settings, tmp_path):
    card = load_model_card(write_tiny_model(tmp_path / "m"))
    assert context_cells(serve_settings, card) == 0
    card.raw["config"] = {"train": {"blur_radius": 4, "context_radius": 40}}
    assert context_cells(serve_settings, card) == 40
    card.raw["config"] = {"train": {"blur_radius": 4, "context_radius": 0}}
    assert context_cells(serve_settings, card) == 4
    assert context_cells(serve_settings.model_copy(update={"cluster_context_cells": 12}), card) == 12


def test_checksum_mismatch_is_refused(tmp_path):
    folder = write_tiny_model(tmp_path / "m")
    card = json.loads((folder / "model.json").read_text())
    card["sha256"] = "0" * 64
    (folder / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelContractError, match="sha256"):
        load_model_card(folder)


def test_hiding_a_species_changes_it_there_and_only_there(serve_dirs):
    model = InferenceEngine(load_model_card(serve_dirs["model"]))
    cube = CubeSource.open(serve_dirs["cube"])
    from rasterio.windows import Window

    box = Window(20, 10, 60, 50)
    region = Window(40, 30, 10, 10)
    base = run_infill(model, cube, InfillRequest(window=box, ensemble=3), 64, 16)
    hid = run_infill(model, cube, InfillRequest(window=box, hide_species=("zinc",), hide_windows=(region,),
                                                ensemble=3), 64, 16)
    zinc = model.card.species.index("zinc")
    gold = model.card.species.index("gold")
    np.testing.assert_array_equal(hid.mean[gold], base.mean[gold])
    inside = np.zeros(base.mean.shape[1:], dtype=bool)
    inside[20:30, 20:30] = True
    assert (hid.hidden[zinc] == inside).all()
    np.testing.assert_array_equal(hid.mean[zinc][~inside], base.mean[zinc][~inside])
    labels = cube.read(box).labels[cube.species.index("zinc")]
    changed = hid.mean[zinc][inside] != base.mean[zinc][inside]
    assert changed[labels[inside] == 1].all()


def test_cpu_arena_is_off_for_requests_and_on_for_the_whole_map_pass(serve_settings, serve_dirs):
    served = InferenceEngine.from_settings(serve_settings)
    assert served.options.enable_cpu_mem_arena is False
    assert InferenceEngine.from_settings(serve_settings, cpu_mem_arena=True).options.enable_cpu_mem_arena is True
    on = serve_settings.model_copy(update={"ort_cpu_mem_arena": True})
    assert InferenceEngine.from_settings(on).options.enable_cpu_mem_arena is True


def test_arena_sessions_share_one_allocator_and_predict_the_same(serve_settings):
    plain = InferenceEngine.from_settings(serve_settings)
    first = InferenceEngine.from_settings(serve_settings, cpu_mem_arena=True)
    second = InferenceEngine.from_settings(serve_settings, cpu_mem_arena=True)  # the process's arena, registered once
    assert not plain.options.enable_cpu_mem_arena
    for engine in (first, second):
        assert engine.options.get_session_config_entry("session.use_env_allocators") == "1"
    rng = np.random.default_rng(0)
    x = rng.random((1, len(plain.card.channels), 32, 40)).astype(np.float32)
    np.testing.assert_array_equal(first.predict(x), plain.predict(x))
    np.testing.assert_array_equal(second.predict(x), plain.predict(x))


def test_never_visible_cells_are_unsurveyed_conus_cells_without_any_record(serve_dirs):
    from backend.inference.reinference import never_visible

    arrays = CubeSource.open(serve_dirs["cube"]).read()
    cells = never_visible(arrays)
    assert cells.any() and not (cells & arrays.coverage).any()
    assert not (cells & (arrays.labels.max(axis=0) > 0)).any() and not (cells & ~arrays.conus_cells).any()
    expected = arrays.conus_cells & ~arrays.coverage & (arrays.labels.sum(axis=0) == 0)
    np.testing.assert_array_equal(cells, expected)
