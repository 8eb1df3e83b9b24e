import os
import signal
import time

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from backend.api.app import create_app
from backend.inference.jobs import wait_for_job
from backend.layers.catalog import load_current

from .conftest import ADMIN_TOKEN, make_settings

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def admin_env(serve_dirs, make_database, tmp_path_factory):
    """Its own database and layers folder (jobs here publish versions), with version 1 published."""
    from backend.inference.reinference import run_reinference

    root = tmp_path_factory.mktemp("admin")
    dirs = {**serve_dirs, "layers": root / "layers", "root": root}
    settings = make_settings(dirs, make_database())
    engine = sa.create_engine(settings.database_url or "")
    first = run_reinference(settings, engine)
    yield settings, engine, first
    engine.dispose()


def test_token_required(admin_env):
    settings, _, _ = admin_env
    with TestClient(create_app(settings)) as client:
        assert client.post("/admin/reinference").status_code == 401
        assert client.post("/admin/reinference", headers={"Authorization": "Bearer nope"}).status_code == 403
        assert client.get("/admin/jobs/1").status_code == 401


def test_reinference_job_publishes_a_new_version(admin_env):
    settings, engine, first = admin_env
    tile = "/tiles/zinc.prospectivity/tiles/WebMercatorQuad/7/20/48.png"
    with TestClient(create_app(settings)) as client:
        assert client.get(tile).status_code == 200
        assert client.get(tile).headers.get("x-tile-cache") == "hit"
        r = client.post("/admin/reinference", headers=AUTH)
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        job = wait_for_job(engine, job_id, timeout_s=120)
        fresh = client.get(tile)
        assert fresh.status_code == 200 and "x-tile-cache" not in fresh.headers, "a new version is never stale"
        assert job["status"] == "succeeded", job
        assert job["progress"] == 1.0 and job["layer_version"] > first
        assert client.get(f"/admin/jobs/{job_id}", headers=AUTH).json()["status"] == "succeeded"
        assert client.get("/api/layers").json()["layer_version"] == job["layer_version"]
        assert client.get("/admin/jobs/999999", headers=AUTH).status_code == 404


def test_concurrent_409_and_kill_9_leaves_served_version_intact(admin_env):
    settings, engine, _ = admin_env
    slow = settings.model_copy(update={"ensemble_masks": 3000})
    before = load_current(engine, settings.layers_dir)
    client = TestClient(create_app(slow))
    with client:
        r = client.post("/admin/reinference", headers=AUTH)
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        again = client.post("/admin/reinference", headers=AUTH)
        assert again.status_code == 409
        assert again.json()["running_job"] == job_id and str(job_id) in again.json()["detail"]
        deadline = time.monotonic() + 60
        while True:
            job = client.get(f"/admin/jobs/{job_id}", headers=AUTH).json()
            if job["progress"] >= 0.06 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert job["status"] == "running" and job["pid"], job
        os.kill(job["pid"], signal.SIGKILL)
        client.app.state.serving.workers[job_id].wait(timeout=10)
    with TestClient(create_app(slow)) as restarted:
        job = restarted.get(f"/admin/jobs/{job_id}", headers=AUTH).json()
        assert job["status"] == "failed" and "died" in job["error"]
        with engine.connect() as conn:  # its layer version is not left 'building' for ever
            statuses = conn.execute(sa.text("SELECT status FROM layer_versions WHERE job_id = :j"),
                                    {"j": job_id}).scalars().all()
        assert statuses and "building" not in statuses, statuses
        after = load_current(engine, settings.layers_dir)
        assert after is not None and before is not None and after.id == before.id
        assert restarted.get("/api/layers").json()["layer_version"] == before.id
        tile = restarted.get("/tiles/zinc.prospectivity/tiles/WebMercatorQuad/7/20/48.png")
        assert tile.status_code in (200, 404) and tile.status_code != 500
        assert all(after.path(i).is_file() for i in after.layers)
        # a new job may start again (stopped at once: its result is not needed)
        r = restarted.post("/admin/reinference", headers=AUTH)
        assert r.status_code == 202
        job2 = r.json()["job_id"]
        proc = restarted.app.state.serving.workers[job2]
        proc.kill()
        proc.wait(timeout=10)
        assert restarted.get(f"/admin/jobs/{job2}", headers=AUTH).json()["status"] == "failed"
