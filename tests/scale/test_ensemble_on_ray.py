"""The whole-map ensemble on a two-node Ray cluster gives the local path's layers for the same mask seed."""

from __future__ import annotations

import numpy as np
import pytest

from .ensembles import assert_same_layers, ray_ensemble

pytest.importorskip("ray", reason="Ray is not installed (the scale extra: pip install -e '.[scale]')")


def test_the_cluster_gives_the_local_layers(two_nodes, shared, local):
    on_ray, stats = ray_ensemble(shared)
    assert stats["actors"] == 2 and stats["nodes"] == 2, stats
    assert_same_layers(local, on_ray)
    assert np.array_equal(local.mean, on_ray.mean, equal_nan=True), "folded in round order: bit for bit"
    assert np.isfinite(on_ray.mean).all() and (on_ray.count == shared.ensemble_masks).all()
    assert np.nanmax(on_ray.std) > 1e-3, "the model sees the hidden regions: the rounds differ"


def test_m3_infer_on_the_cluster_publishes_the_layers_of_a_local_run(two_nodes, shared, make_database, tmp_path):
    import os
    import subprocess
    import sys

    import rasterio
    import sqlalchemy as sa

    from backend.inference.reinference import run_reinference
    from backend.layers.catalog import load_current

    url = make_database()
    env = os.environ | {"M3_DATABASE_URL": url, "M3_CUBE_DIR": str(shared.cube_dir), "M3_MODEL_DIR": str(
        shared.model_dir), "M3_LAYERS_DIR": str(tmp_path / "ray"), "M3_STATE_DIR": str(tmp_path / "state"),
        "M3_WINDOW_SIZE": "128", "M3_WINDOW_OVERLAP": "16", "M3_WINDOW_MARGIN": "4", "M3_ENSEMBLE_MASKS": "4",
        "M3_ENSEMBLE_SEED": "3"}
    done = subprocess.run([sys.executable, "-m", "backend.cli", "infer", "--ray", two_nodes.address, "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    engine = sa.create_engine(url)
    try:
        on_ray = load_current(engine, tmp_path / "ray")
        here = shared.model_copy(update={"database_url": url, "layers_dir": tmp_path / "local", "ensemble_masks": 4})
        run_reinference(here, engine)
        local = load_current(engine, tmp_path / "local")
    finally:
        engine.dispose()
    assert on_ray is not None and local is not None and set(on_ray.layers) == set(local.layers)
    for layer_id in local.layers:
        with rasterio.open(on_ray.path(layer_id, native=True)) as a, \
                rasterio.open(local.path(layer_id, native=True)) as b:
            np.testing.assert_allclose(a.read(1), b.read(1), rtol=0, atol=1e-6, equal_nan=True, err_msg=layer_id)
