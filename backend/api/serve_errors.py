"""Status codes of the inference, layer, tile and job exceptions, registered in one place (titiler style)."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from rio_tiler.errors import (
    EmptyMosaicError,
    InvalidBounds,
    InvalidBufferSize,
    InvalidColorMapName,
    InvalidGeographicBounds,
    MaxArraySizeError,
    PointOutsideBounds,
    TileOutsideBounds,
)

from backend.inference.contract import ModelContractError
from backend.inference.cube_inputs import CubeMissingError
from backend.inference.jobs import JobConflict, JobNotFound
from backend.layers.catalog import LayerNotFound

log = logging.getLogger(__name__)


class BoxTooLarge(ValueError):
    """A requested box has more cells than allowed; the message states the limit."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


class ServiceNotReady(RuntimeError):
    """The model or cube this request needs is not loaded; the message says how to provide it."""


SERVE_STATUS_CODES: dict[type[Exception], int] = {
    LayerNotFound: 404,
    JobNotFound: 404,
    TileOutsideBounds: 404,
    PointOutsideBounds: 404,
    EmptyMosaicError: 404,
    InvalidColorMapName: 422,
    InvalidBufferSize: 422,
    InvalidBounds: 422,
    InvalidGeographicBounds: 422,
    MaxArraySizeError: 413,
    JobConflict: 409,
    BoxTooLarge: 413,
    ServiceNotReady: 503,
    ModelContractError: 503,
    CubeMissingError: 503,
    sa.exc.ProgrammingError: 503,
}

SCHEMA_BEHIND = "the database schema is not up to date (no layer tables); run `m3 db upgrade`"


def add_serve_exception_handlers(app: FastAPI) -> None:
    """Register a JSON handler per exception type of SERVE_STATUS_CODES."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        status = next(code for kind, code in SERVE_STATUS_CODES.items() if isinstance(exc, kind))
        body: dict[str, object] = {"detail": SCHEMA_BEHIND if isinstance(exc, sa.exc.ProgrammingError) else str(exc)}
        if isinstance(exc, JobConflict):
            body["running_job"] = exc.running_id
        if isinstance(exc, BoxTooLarge):
            body["parameter"] = exc.parameter
        if status >= 500:
            log.warning("%s on %s: %s", exc.__class__.__name__, request.url.path, exc)
        return JSONResponse(body, status_code=status)

    for kind in SERVE_STATUS_CODES:
        app.add_exception_handler(kind, handle)
