"""The steps of create_app: the lifespan, the routes, the middleware order and the tile cache's callbacks."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from sqlalchemy.exc import OperationalError

import backend.api.app as app_module
from backend.api.app import _include_routes, _lifespan, _tile_cache, _tile_parameters, _version_token, create_app
from backend.api.guards import BodyLimit, LoadLimiter, RepeatedParameterGuard, SecurityHeaders, TrustedHostGuard
from backend.layers.catalog import LayerNotFound
from backend.layers.tile_cache import TileCacheMiddleware
from backend.settings import Settings

from .conftest import ADMIN_TOKEN

URL = "postgresql+psycopg://m3@127.0.0.1:1/m3"


def test_admin_routes_exist_only_with_a_token() -> None:
    paths = {}
    for token in (None, ADMIN_TOKEN):
        app = FastAPI()
        _include_routes(app, Settings(database_url=URL, admin_token=token))
        paths[token] = set(app.openapi()["paths"])
    assert {"/healthz", "/api/infer", "/api/sites"} <= paths[None]
    assert not any(p.startswith("/admin") for p in paths[None])
    assert any(p.startswith("/admin") for p in paths[ADMIN_TOKEN])
    assert any(p.startswith("/tiles/") for p in paths[None])


def test_middleware_from_the_outermost() -> None:
    app = create_app(Settings(database_url=URL, admin_token=None))
    assert [m.cls for m in app.user_middleware] == [TrustedHostGuard, SecurityHeaders, BodyLimit,
                                                   RepeatedParameterGuard, TileCacheMiddleware, LoadLimiter]


def test_tile_cache_callbacks_before_and_after_the_lifespan() -> None:
    app = FastAPI()
    assert _tile_cache(app) is None
    resolved = {"gold.prospectivity": ("layer", "v7")}

    def resolve(layer_id: str) -> tuple[str, str]:
        if layer_id == "down":
            raise OperationalError("SELECT", {}, Exception("down"))
        if layer_id not in resolved:
            raise LayerNotFound(layer_id)
        return resolved[layer_id]

    app.state.serving = SimpleNamespace(tile_cache="cache", catalog=SimpleNamespace(resolve=resolve))
    assert _tile_cache(app) == "cache"
    assert _version_token(app, {}, "gold.prospectivity") == "v7"
    assert _version_token(app, {}, "silver.prospectivity") is None
    assert _version_token(app, {}, "down") is None


def test_tile_parameters_are_the_query_parameters_of_the_tile_endpoints() -> None:
    names = _tile_parameters(create_app(Settings(database_url=URL, admin_token=None)))
    assert "rescale" in names and "colormap_name" in names
    assert "limit" not in names and "bbox" not in names  # parameters of /api routes only


def test_lifespan_opens_the_serving_state_and_disposes_of_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    disposed: list[bool] = []
    engine = SimpleNamespace(url=SimpleNamespace(render_as_string=lambda hide_password: "postgresql://m3@db/m3"),
                             dispose=lambda: disposed.append(True))
    serving = SimpleNamespace()
    monkeypatch.setattr(app_module, "get_engine", lambda settings: engine)
    monkeypatch.setattr(app_module, "open_serving", lambda settings, eng: serving if eng is engine else None)
    app = FastAPI()

    async def run() -> None:
        async with _lifespan(Settings(database_url=URL))(app):
            assert app.state.engine is engine and app.state.serving is serving and not disposed

    # a thread of its own: an earlier test (a browser driver) may have left an event loop running in this one
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()
    assert disposed == [True]
