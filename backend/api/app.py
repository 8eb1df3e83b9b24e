"""The application factory."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError

from backend import __version__
from backend.api.errors import add_exception_handlers
from backend.api.frontend import mount_frontend
from backend.api.routers import admin, clusters, health, infer, layers, prospectivity, sites, tiles
from backend.api.serve_errors import add_serve_exception_handlers
from backend.api.serving import open_serving
from backend.db.engine import get_engine
from backend.layers.catalog import LayerNotFound
from backend.layers.tile_cache import TileCacheMiddleware
from backend.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for these settings (the environment's when none are given).

    Refuses (ValueError) the default admin token outside development mode.
    """
    settings = settings or Settings()
    settings.check_production()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = get_engine(settings)
        log.info("database: %s", app.state.engine.url.render_as_string(hide_password=True))
        app.state.serving = open_serving(settings, app.state.engine)
        # Move the start-up heap out of the collector's way: without this, full collections of the
        # large import graph stall about one request in ten by ~50 ms (measured on /api/sites).
        gc.collect()
        gc.freeze()
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
    add_serve_exception_handlers(app)
    app.include_router(health.router)
    app.include_router(sites.router)
    app.include_router(layers.router)
    app.include_router(clusters.router)
    app.include_router(prospectivity.router)
    app.include_router(infer.router)
    app.include_router(admin.router)
    app.include_router(tiles.build_tiles_router())
    mount_frontend(app)

    def cache() -> Any:
        """The tile cache once the lifespan has opened it."""
        serving = getattr(app.state, "serving", None)
        return serving.tile_cache if serving is not None else None

    def version_token(scope: Any, layer_id: str) -> str | None:
        """The version token of a layer id (None when unknown: the route answers 404)."""
        try:
            return app.state.serving.catalog.resolve(layer_id)[1]
        except (LayerNotFound, SQLAlchemyError):
            return None

    app.add_middleware(TileCacheMiddleware, cache=cache, resolve=version_token)
    return app
