"""The static map page: the frontend folder and its npm packages, served without any CDN."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, FastAPI, HTTPException, Path, Query
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from rio_tiler.colormap import cmap

from backend.api.deps import SettingsDep
from backend.api.errors import BadQuery
from backend.api.schemas import ColormapStops, CoverageCollection, PageConfig, problems
from backend.settings import PROJECT_ROOT

log = logging.getLogger(__name__)

FRONTEND = PROJECT_ROOT / "frontend"
NODE_MODULES = FRONTEND / "node_modules"

#: The npm packages the page loads, and the folder of each that is served (nothing else is).
VENDOR = {
    "leaflet": "leaflet/dist",
    "topojson-client": "topojson-client/dist",
    "us-atlas": "us-atlas",
    "swagger-ui-dist": "swagger-ui-dist",
    "redoc": "redoc/bundles",
}

router = APIRouter(tags=["page"])


@router.get("/", include_in_schema=False)
def get_index() -> FileResponse:
    """The map page."""
    return FileResponse(FRONTEND / "index.html", headers={"Cache-Control": "no-cache"})


#: The colormaps of rio-tiler (the tiles draw with the same ones).
COLORMAPS = sorted(cmap.list())


@router.get("/api/colormaps/{name}", summary="Colour stops of a tile colormap, for legends",
            response_model=ColormapStops)
def get_colormap(
    name: Annotated[str, Path(description="A rio-tiler colormap name", json_schema_extra={"enum": COLORMAPS})],
    stops: Annotated[int, Query(ge=2, le=256, description="Number of colours, 2..256")] = 16,
) -> ColormapStops:
    """Evenly spaced colours of a rio-tiler colormap (the same one the tiles use)."""
    if name not in COLORMAPS:
        raise BadQuery("name", f"colormap {name!r} unknown; known: {', '.join(COLORMAPS)}")
    table: dict[int, tuple[int, ...]] = dict(cmap.get(name))  # type: ignore[arg-type]
    keys = sorted(table)
    picks = [keys[round(i * (len(keys) - 1) / (stops - 1))] for i in range(stops)]
    return ColormapStops(name=name, stops=["#{:02x}{:02x}{:02x}".format(*table[k][:3]) for k in picks])


@router.get("/api/coverage", summary="Where records are systematic enough to train and score on",
            response_model=CoverageCollection)
def get_coverage(settings: SettingsDep) -> CoverageCollection:
    """The covered states of the cube's coverage rule as GeoJSON (empty before a cube is built)."""
    import shapely

    from backend.cube.contract import CUBE_JSON, read_manifest
    from backend.geo.boundaries import load_states

    manifest = read_manifest(settings.cube_dir) if (settings.cube_dir / CUBE_JSON).exists() else None
    rule = manifest.coverage_rule if manifest is not None else None
    covered = set(rule.covered_states if rule is not None else [])
    features = [
        {"type": "Feature", "properties": {"state": s.code, "name": s.name},
         "geometry": shapely.geometry.mapping(shapely.simplify(s.geometry, 0.01))}
        for s in load_states() if s.code in covered
    ]
    description = rule.description if rule is not None else None
    return CoverageCollection(type="FeatureCollection", features=features, description=description)


#: The model card the page links to (a file of the repository, never a client-named path).
MODEL_CARD = PROJECT_ROOT / "docs" / "model-card.md"


@router.get("/api/model-card", summary="The model card of the shipped model (markdown text)",
            response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **problems(404)})
def get_model_card() -> PlainTextResponse:
    """docs/model-card.md: what the model predicts, how it was trained and evaluated, and its limits."""
    if not MODEL_CARD.is_file():
        raise HTTPException(404, "the model card (docs/model-card.md) is not installed with this service")
    return PlainTextResponse(MODEL_CARD.read_text(encoding="utf-8"), media_type="text/plain; charset=utf-8",
                             headers={"Cache-Control": "no-cache"})


@router.get("/api/config", summary="Settings the map page needs", response_model=PageConfig)
def get_config(settings: SettingsDep) -> PageConfig:
    """Optional online base map and the page defaults."""
    return PageConfig(basemap_url=settings.basemap_url, basemap_attribution=settings.basemap_attribution)


def mount_frontend(app: FastAPI) -> None:
    """Serve the page, its modules and the vendored npm packages; warn when `npm ci` has not run."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=FRONTEND / "src", check_dir=False), name="static")
    for name, folder in VENDOR.items():
        path = NODE_MODULES / folder
        if not path.is_dir():
            log.warning("frontend package %s is missing (%s); run `npm ci` in frontend/", name, path)
            _mount_missing(app, name)
            continue
        app.mount(f"/vendor/{name}", StaticFiles(directory=path), name=f"vendor-{name}")


def _mount_missing(app: FastAPI, name: str) -> None:
    """A clear 503 for a vendored package that was not installed."""

    @app.get(f"/vendor/{name}/{{rest:path}}", include_in_schema=False)
    def missing(rest: str) -> None:
        """Explain how to install the package."""
        raise HTTPException(503, f"frontend package {name} is not installed; run `npm ci` in frontend/")


def frontend_ready() -> bool:
    """True when every vendored package is installed."""
    return all((NODE_MODULES / folder).is_dir() for folder in VENDOR.values())


def mount_docs(app: FastAPI) -> None:
    """Swagger UI at /docs and ReDoc at /redoc, from the vendored npm packages (they work offline)."""
    title = f"{app.title} - API"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        """Swagger UI."""
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=title,
                                   swagger_js_url="/vendor/swagger-ui-dist/swagger-ui-bundle.js",
                                   swagger_css_url="/vendor/swagger-ui-dist/swagger-ui.css",
                                   swagger_favicon_url="/vendor/swagger-ui-dist/favicon-32x32.png")

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        """ReDoc."""
        return get_redoc_html(openapi_url=app.openapi_url or "/openapi.json", title=title,
                              redoc_js_url="/vendor/redoc/redoc.standalone.js",
                              redoc_favicon_url="/vendor/swagger-ui-dist/favicon-32x32.png", with_google_fonts=False)
