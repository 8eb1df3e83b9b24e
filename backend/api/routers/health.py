"""Service health: database, model, execution provider, current layer version."""

from __future__ import annotations

import time

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from backend import __version__
from backend.api.deps import EngineDep
from backend.api.schemas import HealthPublic, TileCacheStats

router = APIRouter(tags=["health"])

#: Seconds the site count of /healthz is reused (the database is still asked every time).
SITES_COUNT_TTL_S = 5.0


@router.get("/healthz", summary="Health of the service and its database", response_model=HealthPublic,
            responses={503: {"model": HealthPublic, "description": "The database does not answer"}})
def get_health(request: Request, engine: EngineDep) -> JSONResponse:
    """200 when the database answers, 503 (with the reason) when it does not."""
    health = HealthPublic(status="ok", version=__version__, database="ok", model=None, provider=None,
                          layer_version=None)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SET LOCAL statement_timeout = 2000")
            cached = getattr(request.app.state, "health_sites", None)
            if cached is not None and time.monotonic() - cached[0] < SITES_COUNT_TTL_S:
                conn.exec_driver_sql("SELECT 1").scalar_one()
                health.sites = cached[1]
            else:
                health.sites = conn.exec_driver_sql("SELECT count(*) FROM sites").scalar_one()
                request.app.state.health_sites = (time.monotonic(), health.sites)
    except sa.exc.SQLAlchemyError as exc:
        health.status, health.database = "unavailable", f"unavailable: {exc.__class__.__name__}"
        return JSONResponse(health.model_dump(exclude_unset=True), status_code=503)
    serving = getattr(request.app.state, "serving", None)
    if serving is not None:
        if serving.model is not None:
            health.model, health.provider = serving.model.card.name, serving.model.provider
        else:
            health.model_error = serving.model_error
        health.cube = serving.cube.sha256[:12] if serving.cube is not None else None
        try:
            current = serving.catalog.current()
            health.layer_version = current.id if current else None
        except sa.exc.SQLAlchemyError:
            health.layer_version = None
        cache = serving.tile_cache
        health.tile_cache = TileCacheStats(hits=cache.hits, misses=cache.misses, bytes=cache.bytes)
    return JSONResponse(health.model_dump(exclude_unset=True))
