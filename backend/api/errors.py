"""Exceptions mapped to HTTP status codes in one place."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from backend.api.guards import excerpt

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


#: Validation errors listed in a 422 (the count of all of them is given too).
MAX_LISTED_ERRORS = 10


def validation_errors(exc: RequestValidationError) -> dict[str, object]:
    """A 422 body naming the first few problems, each with at most a short excerpt of the input."""
    errors = list(exc.errors())
    listed = []
    for error in errors[:MAX_LISTED_ERRORS]:
        item: dict[str, object] = {"type": error.get("type"), "loc": list(error.get("loc", ()))[:8],
                                   "msg": excerpt(str(error.get("msg", "")), 200)}
        if "input" in error:
            item["input"] = excerpt(error["input"])
        listed.append(item)
    return {"detail": listed, "errors": len(errors)}


#: Methods a 405's Allow header may list.
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(app: FastAPI, scope: dict[str, Any]) -> list[str]:
    """Methods some route of the app answers at this request's path (two routes may share a path)."""
    return [method for method in METHODS
            if any(route.matches({**scope, "method": method})[0] == Match.FULL for route in app.router.routes)]


def add_exception_handlers(app: FastAPI) -> None:
    """Register a handler per exception type of STATUS_CODES, the short validation-error body, and the 405s.

    A 405's Allow header lists the methods of every route of the path, not only those of the first route.
    """

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 405:
            allow = ", ".join(allowed_methods(app, dict(request.scope)))
            return JSONResponse({"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": allow})
        return await http_exception_handler(request, exc)

    app.add_exception_handler(StarletteHTTPException, http_error)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse(validation_errors(exc), status_code=422)

    app.add_exception_handler(RequestValidationError, invalid)

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
