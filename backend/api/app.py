"""The application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from backend import __version__
from backend.api.errors import add_exception_handlers
from backend.api.routers import health, sites
from backend.db.engine import get_engine
from backend.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for these settings (the environment's when none are given)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = get_engine(settings)
        log.info("database: %s", app.state.engine.url.render_as_string(hide_password=True))
        try:
            yield
        finally:
            app.state.engine.dispose()

    app = FastAPI(
        title="M3 prospectivity service",
        version=__version__,
        description="Mineral prospectivity from masked infilling of sparse site records (M3).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    add_exception_handlers(app)
    app.include_router(health.router)
    app.include_router(sites.router)
    return app
