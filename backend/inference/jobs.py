"""Background jobs stored in PostGIS: one running job per kind, progress, and reaping of dead workers."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from backend.db.tables import jobs, layer_versions
from backend.settings import Settings

log = logging.getLogger(__name__)

JOB_KINDS = ("reinference",)


class JobConflict(RuntimeError):
    """A job of that kind is already running; carries its id."""

    def __init__(self, running_id: int) -> None:
        super().__init__(f"job {running_id} is already running; wait for it (GET /admin/jobs/{running_id})")
        self.running_id = running_id


class JobNotFound(LookupError):
    """No job with that id."""


def start_job(engine: sa.Engine, kind: str, params: dict[str, Any], pid: int | None = None) -> int:
    """Insert a running job, or JobConflict naming the one already running (a unique index decides)."""
    reap_dead_jobs(engine)
    try:
        with engine.begin() as conn:
            return int(conn.execute(jobs.insert().values(
                kind=kind, status="running", params=params, pid=pid, host=socket.gethostname(),
                message="starting").returning(jobs.c.id)).scalar_one())
    except sa.exc.IntegrityError:
        with engine.connect() as conn:
            running = conn.execute(sa.select(jobs.c.id).where(jobs.c.kind == kind, jobs.c.status == "running")
                                   ).scalar()
        raise JobConflict(int(running or 0)) from None


def update_job(engine: sa.Engine, job_id: int, **values: Any) -> None:
    """Set columns of a job (progress, message, pid, layer_version, ...) and its updated_at."""
    with engine.begin() as conn:
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(updated_at=sa.func.now(), **values))


def finish_job(engine: sa.Engine, job_id: int, ok: bool, message: str, error: str | None = None) -> None:
    """Mark a running job succeeded or failed."""
    values: dict[str, Any] = {"status": "succeeded" if ok else "failed", "message": message, "error": error,
                              "finished_at": sa.func.now()}
    if ok:
        values["progress"] = 1.0
    with engine.begin() as conn:
        conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.status == "running")
                     .values(updated_at=sa.func.now(), **values))


def pid_alive(pid: int) -> bool:
    """True when a process with that id runs here and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def reap_dead_jobs(engine: sa.Engine, grace_s: float = 30.0) -> list[int]:
    """Mark failed the running jobs of this host whose worker process is gone (e.g. killed with -9)."""
    host = socket.gethostname()
    with engine.connect() as conn:
        rows = conn.execute(sa.select(jobs.c.id, jobs.c.pid, jobs.c.created_at, sa.func.now().label("now"))
                            .where(jobs.c.status == "running", jobs.c.host == host)).all()
    dead = []
    for row in rows:
        if row.pid is not None and not pid_alive(row.pid):
            dead.append((row.id, f"worker process {row.pid} died; the served layers were not changed"))
        elif row.pid is None and (row.now - row.created_at).total_seconds() > grace_s:
            dead.append((row.id, "worker never started; the served layers were not changed"))
    for job_id, why in dead:
        log.warning("job %d: %s", job_id, why)
        finish_job(engine, job_id, ok=False, message="failed", error=why)
    if dead:
        reap_stale_versions(engine)
    return [d[0] for d in dead]


#: A layer version built without a job (``m3 infer``) still 'building' after this long is taken for dead.
STALE_BUILD_S = 24 * 3600.0


def reap_stale_versions(engine: sa.Engine, stale_s: float = STALE_BUILD_S) -> list[int]:
    """Mark failed the 'building' layer versions whose job is no longer running (or, without a job, too old).

    A worker killed with -9 cannot mark its version itself; its folder is removed at the next pruning.
    """
    building = sa.select(layer_versions.c.id).where(layer_versions.c.status == "building")
    running = sa.select(jobs.c.id).where(jobs.c.status == "running")
    with engine.begin() as conn:
        ids = conn.execute(
            layer_versions.update()
            .where(layer_versions.c.id.in_(building),
                   sa.or_(sa.and_(layer_versions.c.job_id.is_not(None), layer_versions.c.job_id.not_in(running)),
                          sa.and_(layer_versions.c.job_id.is_(None),
                                  layer_versions.c.created_at < sa.func.now() - sa.func.make_interval(
                                      0, 0, 0, 0, 0, 0, stale_s))))
            .values(status="failed", is_current=False)
            .returning(layer_versions.c.id)).scalars().all()
    if ids:
        log.warning("layer versions %s were left building by a dead job; marked failed", list(ids))
    return [int(i) for i in ids]


def get_job(engine: sa.Engine, job_id: int) -> dict[str, Any]:
    """A job as JSON (dead workers reaped first), or JobNotFound."""
    reap_dead_jobs(engine)
    with engine.connect() as conn:
        row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
    if row is None:
        raise JobNotFound(f"job {job_id} does not exist")
    out = dict(row)
    for key in ("created_at", "updated_at", "finished_at"):
        out[key] = out[key].isoformat() if out[key] else None
    return out


def settings_environment(settings: Settings) -> dict[str, str]:
    """Environment variables that rebuild these settings in a child process."""
    env = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        text = json.dumps(value) if isinstance(value, list | dict) else str(value)
        env[f"M3_{name.upper()}"] = text
    env["M3_DATABASE_URL"] = settings.resolved_database_url()
    return env


def spawn_worker(settings: Settings, job_id: int) -> subprocess.Popen[bytes]:
    """Start ``python -m backend.inference.worker JOB`` with these settings; its log goes to the state folder."""
    env = {**os.environ, **settings_environment(settings)}
    logs = settings.state_dir / "jobs"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / f"job-{job_id}.log").open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "backend.inference.worker", str(job_id)], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return proc


def wait_for_job(engine: sa.Engine, job_id: int, timeout_s: float = 600.0) -> dict[str, Any]:
    """Poll a job until it is no longer running (for the CLI and tests)."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = get_job(engine, job_id)
        if job["status"] != "running" or time.monotonic() > deadline:
            return job
        time.sleep(0.2)
