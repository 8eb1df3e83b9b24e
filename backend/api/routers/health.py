"""Service health: database, model, execution provider, current layer version."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from backend import __version__
from backend.api.deps import EngineDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Health of the service and its database")
def get_health(engine: EngineDep) -> JSONResponse:
    """200 when the database answers, 503 (with the reason) when it does not."""
    body: dict[str, Any] = {"status": "ok", "version": __version__, "database": "ok",
                            "model": None, "provider": None, "layer_version": None}
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SET LOCAL statement_timeout = 2000")
            body["sites"] = conn.exec_driver_sql("SELECT count(*) FROM sites").scalar_one()
    except sa.exc.SQLAlchemyError as exc:
        body.update(status="unavailable", database=f"unavailable: {exc.__class__.__name__}")
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)
