"""The static map page: the frontend folder and its npm packages, served without any CDN."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from backend.api.deps import SettingsDep
from backend.settings import PROJECT_ROOT

log = logging.getLogger(__name__)

FRONTEND = PROJECT_ROOT / "frontend"
NODE_MODULES = FRONTEND / "node_modules"

#: The npm packages the page loads, and the folder of each that is served (nothing else is).
VENDOR = {
    "leaflet": "leaflet/dist",
    "leaflet.markercluster": "leaflet.markercluster/dist",
    "topojson-client": "topojson-client/dist",
    "us-atlas": "us-atlas",
}

router = APIRouter(tags=["page"])


@router.get("/", include_in_schema=False)
def get_index() -> FileResponse:
    """The map page."""
    return FileResponse(FRONTEND / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/api/config", summary="Settings the map page needs")
def get_config(settings: SettingsDep) -> dict[str, object]:
    """Optional online base map and the page defaults."""
    return {"basemap_url": settings.basemap_url, "basemap_attribution": settings.basemap_attribution}


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
    return all((NODE_MODULES / Path(folder)).is_dir() for folder in VENDOR.values())
