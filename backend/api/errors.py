"""Exceptions mapped to HTTP status codes in one place."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

log = logging.getLogger(__name__)


class BadQuery(ValueError):
    """A query parameter is wrong; the message says what is wrong and what is allowed."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


DATABASE_DOWN = "the site database is unavailable right now; retry shortly"

STATUS_CODES: dict[type[Exception], int] = {
    BadQuery: 422,
    sa.exc.OperationalError: 503,
    sa.exc.InterfaceError: 503,
    sa.exc.TimeoutError: 503,
}


def add_exception_handlers(app: FastAPI) -> None:
    """Register a handler per exception type of STATUS_CODES."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        status = next(code for kind, code in STATUS_CODES.items() if isinstance(exc, kind))
        if isinstance(exc, BadQuery):
            body = {"detail": str(exc), "parameter": exc.parameter}
        else:
            log.warning("database unavailable on %s: %s", request.url.path, exc.__class__.__name__)
            body = {"detail": DATABASE_DOWN}
        headers = {"Retry-After": "5"} if status == 503 else None
        return JSONResponse(body, status_code=status, headers=headers)

    for kind in STATUS_CODES:
        app.add_exception_handler(kind, handle)
