import json

import numpy as np
import pytest
import rasterio
import sqlalchemy as sa
from rasterio.windows import Window
from typer.testing import CliRunner

from backend.cli import app
from backend.inference.contract import load_model_card
from backend.inference.cube_inputs import CubeSource
from backend.inference.engine import InferenceEngine
from backend.inference.infill import InfillRequest, run_infill
from backend.layers.catalog import LayerCatalog, load_current
from backend.settings import PROJECT_ROOT

from .conftest import make_settings
from .synthetic import write_tiny_model


def test_m3_infer_publishes_and_prunes(serve_dirs, make_database, tmp_path, monkeypatch):
    settings = make_settings({**serve_dirs, "layers": tmp_path / "layers", "root": tmp_path}, make_database(),
                             layers_keep=2)
    for key, value in {"M3_DATABASE_URL": settings.database_url, "M3_WINDOW_SIZE": "64",
                       "M3_LAYERS_KEEP": "2"}.items():
        monkeypatch.setenv(key, str(value))
    args = ["infer", "--model-dir", str(serve_dirs["model"]), "--cube-dir", str(serve_dirs["cube"]),
            "--layers-dir", str(settings.layers_dir), "--masks", "3", "--no-progress"]
    engine = sa.create_engine(settings.database_url or "")
    catalog = LayerCatalog(engine, settings.layers_dir, ttl_s=0)
    try:
        versions, maps = [], []
        for mask_seed in (4, 4, 5):
            result = CliRunner().invoke(app, [*args, "--mask-seed", str(mask_seed)])
            assert result.exit_code == 0, result.output
            assert "published layer version" in result.output
            current = load_current(engine, settings.layers_dir)
            versions.append(current.id)
            assert current.ensemble["mask_seed"] == mask_seed
            path, token = catalog.resolve("zinc.prospectivity")
            assert token == f"v{versions[-1]}" and path.is_file()
            with rasterio.open(current.path("zinc.prospectivity", native=True)) as src:
                maps.append(src.read(1))
        assert np.array_equal(maps[0], maps[1]), "the same mask seed draws the same masks"
        assert not np.array_equal(maps[1], maps[2]), "another mask seed draws other masks"
        assert sorted(p.name for p in settings.layers_dir.glob("v*")) == [f"v{v}" for v in versions[-2:]]
        with engine.connect() as c:
            statuses = dict(c.execute(sa.text("SELECT id, status FROM layer_versions")).all())
            jobs = c.execute(sa.text("SELECT status FROM jobs")).scalars().all()
        assert statuses[versions[0]] == "removed" and jobs == ["succeeded"] * 3
    finally:
        engine.dispose()


def test_m3_infer_without_a_model_says_so(serve_dirs, make_database, tmp_path, monkeypatch):
    monkeypatch.setenv("M3_DATABASE_URL", make_database())
    result = CliRunner().invoke(app, ["infer", "--model-dir", str(tmp_path / "none"), "--cube-dir",
                                      str(serve_dirs["cube"]), "--layers-dir", str(tmp_path / "l")])
    assert result.exit_code == 1 and "model.json does not exist" in result.output


REAL_CUBE = PROJECT_ROOT / "cube"


@pytest.mark.skipif(not (REAL_CUBE / "cube.json").is_file(), reason="the real cube is not built (m3 cube build)")
def test_infill_on_the_real_cube_200x200(tmp_path):
    cube = CubeSource.open(REAL_CUBE)
    meta = json.loads((REAL_CUBE / "cube.json").read_text())
    model = InferenceEngine(load_model_card(write_tiny_model(tmp_path / "m", species=tuple(meta["species"]),
                                                             covariates=cube.covariate_names)))
    cube.check_model(model.card)
    row, col = cube.grid.lonlat_to_rowcol(np.array([-120.9]), np.array([39.0]))
    box = Window(int(col[0]) - 100, int(row[0]) - 100, 200, 200)
    result = run_infill(model, cube, InfillRequest(window=box, hide_species=("gold",), ensemble=1), 512, 64)
    assert result.mean.shape == (10, 200, 200) and np.isfinite(result.mean).all()
    assert result.hidden[0].all() and not result.hidden[1:].any()
    assert result.seconds < 5
