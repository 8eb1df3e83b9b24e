"""The application factory."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError
from titiler.core.errors import DEFAULT_STATUS_CODES
from titiler.core.errors import add_exception_handlers as add_titiler_exception_handlers

from backend import __version__
from backend.api.errors import add_exception_handlers
from backend.api.frontend import mount_docs, mount_frontend
from backend.api.guards import (
    BodyLimit,
    LoadLimiter,
    Pool,
    RepeatedParameterGuard,
    SecurityHeaders,
    TrustedHostGuard,
    list_query_parameters,
)
from backend.api.openapi import install_openapi
from backend.api.routers import (
    admin,
    clusters,
    context,
    health,
    identify,
    infer,
    layers,
    prospectivity,
    site_tiles,
    sites,
    tiles,
)
from backend.api.schemas import problems
from backend.api.serve_errors import add_serve_exception_handlers
from backend.api.serving import open_serving
from backend.db.engine import get_engine
from backend.layers.catalog import LayerNotFound
from backend.layers.tile_cache import TileCacheMiddleware
from backend.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for these settings (the environment's when none are given).

    Refuses (ValueError) an admin token shorter than 32 characters; without a token the admin routes are off.
    """
    settings = settings or Settings()
    settings.check_production()
    app = FastAPI(
        title="M3 prospectivity service",
        version=__version__,
        description="Mineral prospectivity from masked infilling of sparse site records (M3).",
        lifespan=_lifespan(settings),
        docs_url=None,
        redoc_url=None,
        # Any request can meet the guards: a foreign Host (400), a large body (413), a repeated parameter (422).
        responses=problems(400, 413, 422),
    )
    app.state.settings = settings
    install_openapi(app)
    # TiTiler's own errors (bad band index, expression, format, ...) first; the service's mapping overrides.
    add_titiler_exception_handlers(app, {kind: code for kind, code in DEFAULT_STATUS_CODES.items()
                                         if kind is not Exception})
    add_exception_handlers(app)
    add_serve_exception_handlers(app)
    _include_routes(app, settings)
    mount_frontend(app)
    mount_docs(app)
    _add_middleware(app, settings)
    return app


def _lifespan(settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: open the database engine and the serving state; dispose of the engine at the end."""

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

    return lifespan


def _include_routes(app: FastAPI, settings: Settings) -> None:
    """The API routers (the admin routes only with an admin token), then the tile endpoints."""
    app.include_router(health.router)
    app.include_router(sites.router)
    app.include_router(site_tiles.router)
    site_tiles.mount_tile_decoder(app)
    app.include_router(layers.router)
    app.include_router(clusters.router)
    app.include_router(prospectivity.router)
    app.include_router(identify.router)
    app.include_router(infer.router)
    app.include_router(context.router)
    if settings.admin_enabled:
        app.include_router(admin.router)
    app.include_router(context.build_context_tiles_router())  # before /tiles/{layer_id}: "context" is no layer id
    app.include_router(tiles.build_tiles_router())


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    """The load limiter, the tile cache and the guards, innermost first."""
    app.add_middleware(LoadLimiter, pools=_pools(settings))  # inside the cache: a cached tile never waits
    app.add_middleware(TileCacheMiddleware, cache=partial(_tile_cache, app), resolve=partial(_version_token, app),
                       parameters=partial(_tile_parameters, app))
    # Outermost last: the host is checked first, then the headers, the body size and repeated parameters.
    app.add_middleware(RepeatedParameterGuard, list_parameters=lambda: list_query_parameters(app.openapi()))
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeaders, img_sources=_origin(settings.basemap_url))
    app.add_middleware(TrustedHostGuard, allowed=settings.allowed_hosts)


def _tile_cache(app: FastAPI) -> Any:
    """The tile cache once the lifespan has opened it."""
    serving = getattr(app.state, "serving", None)
    return serving.tile_cache if serving is not None else None


def _version_token(app: FastAPI, scope: Any, layer_id: str) -> str | None:
    """The version token of a layer id (None when unknown: the route answers 404)."""
    try:
        return app.state.serving.catalog.resolve(layer_id)[1]
    except (LayerNotFound, SQLAlchemyError):
        return None


def _tile_parameters(app: FastAPI) -> set[str]:
    """Query parameters of the tile endpoints (the others do not change a tile, so the cache drops them)."""
    return {p["name"] for path, item in app.openapi()["paths"].items() if path.startswith("/tiles/")
            for op in item.values() for p in op.get("parameters", []) if p.get("in") == "query"}


def _pools(settings: Settings) -> list[tuple[Pool, Any]]:
    """The bounded pools of the heavy routes: on-request inference, box statistics, tile renders."""
    wait = settings.pool_wait_s

    def infer(method: str, path: str) -> bool:
        return path == "/api/infer"

    def heavy(method: str, path: str) -> bool:
        return path == "/api/prospectivity" or (path.startswith("/tiles/") and "/tiles/" not in path[7:]
                                                 and not path.endswith(("/info", "/info.geojson", ".json")))

    def tiles(method: str, path: str) -> bool:
        return path.startswith("/tiles/")

    return [(Pool("inference", settings.infer_concurrency, settings.infer_queue, wait, 10), infer),
            (Pool("statistics", settings.heavy_concurrency, settings.heavy_queue, wait, 5), heavy),
            (Pool("tile", settings.tile_concurrency, settings.tile_queue, wait, 2), tiles)]


def _origin(url: str | None) -> str:
    """`` scheme://host`` of an online base map URL for the page's img-src (empty when there is none)."""
    if not url:
        return ""
    from urllib.parse import urlsplit

    parts = urlsplit(url.replace("{s}", "a").replace("{z}", "0").replace("{x}", "0").replace("{y}", "0"))
    host = parts.netloc.split("@")[-1]
    if url.split("//", 1)[-1].startswith("{s}."):
        host = "*." + host.split(".", 1)[1]
    return f" {parts.scheme}://{host}" if parts.scheme in ("http", "https") and host else ""
