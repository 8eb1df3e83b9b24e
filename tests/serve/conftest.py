"""Fixtures of the serving tests: a seeded synthetic cube, a tiny ONNX model, a published layer version."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from backend.settings import Settings

from .synthetic import FOOTHILLS, small_grid, write_synthetic_cube, write_tiny_model

ADMIN_TOKEN = "s3cret-test-token-of-at-least-32-characters"
#: Sites inserted into the serving database: (name, species, lon, lat); the first lie in the high-score blob.
SYNTHETIC_SITES = [
    ("Blob Sand and Gravel Pit", ["sand_and_gravel"], FOOTHILLS[0] - 0.15, FOOTHILLS[1]),
    ("Blob Clay Pit", ["clay"], FOOTHILLS[0] - 0.2, FOOTHILLS[1] + 0.05),
    ("Far Away Mine", ["gold"], -110.0, 44.0),
]


@pytest.fixture(scope="session")
def serve_dirs(tmp_path_factory) -> dict[str, Path]:
    """A synthetic cube and the tiny model, written once."""
    root = tmp_path_factory.mktemp("serve")
    manifest_grid = small_grid()
    write_synthetic_cube(root / "cube", manifest_grid)
    write_tiny_model(root / "model")
    return {"root": root, "cube": root / "cube", "model": root / "model", "layers": root / "layers"}


@pytest.fixture(scope="session")
def serve_db_url(make_database) -> str:
    """A migrated database with a few synthetic sites around the blob."""
    url = make_database()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for i, (name, species, lon, lat) in enumerate(SYNTHETIC_SITES):
            conn.execute(sa.text(
                "INSERT INTO sites (source, record_id, name, state, geom, species, commodities) "
                "VALUES ('tests', :rid, :name, 'CA', ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :species, "
                ":species)"),
                {"rid": str(i), "name": name, "lon": lon, "lat": lat, "species": species})
    engine.dispose()
    return url


def make_settings(serve_dirs: dict[str, Path], db_url: str, **overrides: object) -> Settings:
    """Settings of the serving tests (small windows and ensembles, a non-default admin token)."""
    values: dict = {
        "database_url": db_url, "model_dir": serve_dirs["model"], "cube_dir": serve_dirs["cube"],
        "layers_dir": serve_dirs["layers"], "state_dir": serve_dirs["root"] / "state",
        "window_size": 64, "window_overlap": 16, "ensemble_masks": 3, "cluster_min_cells": 4,
        "cluster_top_share": 0.1,
        "cluster_site_distance_m": 3000.0, "admin_token": ADMIN_TOKEN, "layer_version_ttl_s": 0.0,
        "ort_intra_threads": 1, "development": False,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def serve_settings(serve_dirs, serve_db_url) -> Settings:
    """The settings every serving test shares."""
    return make_settings(serve_dirs, serve_db_url)


@pytest.fixture(scope="session")
def serve_engine(serve_settings) -> Iterator[sa.Engine]:
    """Engine on the serving database."""
    engine = sa.create_engine(serve_settings.database_url or "")
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def published(serve_settings, serve_engine) -> int:
    """One layer version published by an in-process re-inference."""
    from backend.inference.reinference import run_reinference

    return run_reinference(serve_settings, serve_engine)


@pytest.fixture(scope="session")
def serve_client(serve_settings, published) -> Iterator[TestClient]:
    """The app on the serving database with the published version, lifespan running."""
    from backend.api.app import create_app

    with TestClient(create_app(serve_settings)) as client:
        yield client
