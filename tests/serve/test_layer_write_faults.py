"""A re-inference that fails half-way through writing its layers never becomes (or leaves) a partial version."""

from __future__ import annotations

import hashlib

import morecantile
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from rio_cogeo.cogeo import cog_validate

from backend.inference import reinference
from backend.layers.catalog import load_current

from .conftest import make_settings
from .synthetic import FOOTHILLS


@pytest.fixture()
def fault_env(serve_dirs, make_database, tmp_path):
    """Settings on a fresh database and layers folder, with one good version already published."""
    settings = make_settings(serve_dirs, make_database(), layers_dir=tmp_path / "layers",
                             state_dir=tmp_path / "state", ensemble_masks=1)
    engine = sa.create_engine(settings.database_url or "")
    first = reinference.run_reinference(settings, engine)
    yield settings, engine, first
    engine.dispose()


def _fingerprint(folder) -> dict[str, str]:
    """sha256 of every file of a version folder."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _assert_served_version_intact(settings, engine, first: int, before: dict[str, str]) -> None:
    """The first version is still current, byte for byte, and serves tiles; nothing half-written is left."""
    current = load_current(engine, settings.layers_dir)
    assert current is not None and current.id == first
    assert _fingerprint(current.folder) == before
    for layer_id in current.layers:
        assert cog_validate(current.path(layer_id))[0]
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, status, is_current FROM layer_versions ORDER BY id")).all()
        n_clusters = conn.execute(sa.text("SELECT count(*) FROM clusters WHERE layer_version <> :v"),
                                  {"v": first}).scalar_one()
    assert [(r.id, r.status, r.is_current) for r in rows] == [(first, "ready", True), (first + 1, "failed", False)]
    assert n_clusters == 0, "clusters of the failed version must not be stored"
    assert sorted(p.name for p in settings.layers_dir.iterdir() if not p.name.startswith("tmp")) == [f"v{first}"], \
        "no staging folder and no folder of the failed version may remain"
    from backend.api.app import create_app

    tile = morecantile.tms.get("WebMercatorQuad").tile(*FOOTHILLS, 6)
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/layers").json()["layer_version"] == first
        r = client.get(f"/tiles/zinc.prospectivity/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png")
        assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_disk_full_half_way_through_the_layers(fault_env, monkeypatch):
    settings, engine, first = fault_env
    before = _fingerprint(load_current(engine, settings.layers_dir).folder)
    real_write = reinference.write_layer
    written: list[str] = []

    def failing_write(array, crs, transform, web_path, native_path=None, description=""):
        if len(written) == 3:  # the fourth layer: a truncated file on disk, then the device is full
            web_path.write_bytes(b"II*\x00" + b"\x00" * 100)
            raise OSError(28, "No space left on device", str(web_path))
        real_write(array, crs, transform, web_path, native_path, description)
        written.append(web_path.name)

    monkeypatch.setattr(reinference, "write_layer", failing_write)
    with pytest.raises(OSError, match="No space left"):
        reinference.run_reinference(settings, engine)
    assert len(written) == 3
    _assert_served_version_intact(settings, engine, first, before)


def test_database_fails_while_switching_versions(fault_env, monkeypatch):
    settings, engine, first = fault_env
    before = _fingerprint(load_current(engine, settings.layers_dir).folder)
    real_publish = reinference.publish_version

    def failing_publish(conn, version, infos, ensemble):
        real_publish(conn, version, infos, ensemble)  # inside the transaction: clusters stored, version marked
        raise sa.exc.OperationalError("UPDATE layer_versions", {}, Exception("server closed the connection"))

    monkeypatch.setattr(reinference, "publish_version", failing_publish)
    with pytest.raises(sa.exc.OperationalError):
        reinference.run_reinference(settings, engine)
    _assert_served_version_intact(settings, engine, first, before)
