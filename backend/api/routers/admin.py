"""Admin: start a whole-map re-inference job (bearer token), and follow jobs."""

from __future__ import annotations

import logging
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from backend.api.deps import EngineDep, SettingsDep
from backend.api.schemas import JobCreated, JobPublic, problems
from backend.api.serve_errors import ServiceNotReady
from backend.api.serving import ServingDep
from backend.inference.jobs import get_job, spawn_worker, start_job, update_job

log = logging.getLogger(__name__)

bearer = HTTPBearer(auto_error=False, description="M3_ADMIN_TOKEN")


def require_admin(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """404 when no admin token is set, 401 without a bearer token, 403 with a wrong one."""
    if settings.admin_token is None or not settings.admin_enabled:
        raise HTTPException(404, "the admin routes are off: no M3_ADMIN_TOKEN is set")
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise HTTPException(401, "an admin bearer token is required (Authorization: Bearer <M3_ADMIN_TOKEN>)",
                            headers={"WWW-Authenticate": "Bearer"})
    if not secrets.compare_digest(credentials.credentials.encode(), settings.admin_token.get_secret_value().encode()):
        raise HTTPException(403, "the admin token is wrong")


router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)],
                   responses=problems(401, 403, 503))


@router.post("/reinference", status_code=202, summary="Start a whole-map re-inference job",
             response_model=JobCreated,
             responses={**problems(409), 202: {"description": "The job started; Location is its URL", "headers": {
                 "Location": {"description": "URL of GET /admin/jobs/{job_id}", "schema": {"type": "string"}}}}})
def create_reinference(request: Request, engine: EngineDep, serving: ServingDep) -> JSONResponse:
    """202 with the job id; 409 naming the running job when one is already running."""
    if serving.model is None:
        raise ServiceNotReady(f"no model to run: {serving.model_error}")
    if serving.cube is None:
        raise ServiceNotReady(f"no cube to run on: {serving.cube_error}")
    settings = serving.settings
    card = serving.model.card
    params = {"model": card.name, "masks": settings.ensemble_masks, "seeds": len(card.members)}
    job_id = start_job(engine, "reinference", params)
    try:
        proc = spawn_worker(settings, job_id)
    except OSError as exc:
        update_job(engine, job_id, status="failed", error=f"could not start the worker: {exc}")
        raise
    update_job(engine, job_id, pid=proc.pid)
    serving.workers[job_id] = proc
    log.info("job %d: re-inference worker pid %d", job_id, proc.pid)
    url = str(request.url_for("read_job", job_id=job_id))
    return JSONResponse(JobCreated(job_id=job_id, status="running", url=url).model_dump(), status_code=202,
                        headers={"Location": url})


#: Largest job id (the column is a 32-bit integer).
MAX_JOB_ID = 2**31 - 1


@router.get("/jobs/{job_id}", summary="Status and progress of a job", response_model=JobPublic,
            responses=problems(404))
def read_job(job_id: Annotated[int, Path(ge=1, le=MAX_JOB_ID, description=f"A job id, 1..{MAX_JOB_ID}")],
             engine: EngineDep, serving: ServingDep) -> JobPublic:
    """The job row: status (running, succeeded, failed), progress 0..1, message, error, layer version."""
    serving.poll_workers()
    return JobPublic(**get_job(engine, job_id))
