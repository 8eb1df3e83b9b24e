"""What the serving routes share: the model session, the cube, the layer catalog and the tile cache."""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass, field
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Request

from backend.api.context_layers import ContextCatalog
from backend.inference.contract import ModelContractError
from backend.inference.cube_inputs import CubeMissingError, CubeSource
from backend.inference.engine import InferenceEngine
from backend.inference.jobs import reap_dead_jobs, reap_stale_versions
from backend.layers.catalog import LayerCatalog
from backend.layers.tile_cache import TileCache
from backend.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Serving:
    """Per-process serving state, opened once in the app lifespan (the context layers are written on first use)."""

    settings: Settings
    catalog: LayerCatalog
    tile_cache: TileCache
    context: ContextCatalog
    model: InferenceEngine | None = None
    model_error: str | None = None
    cube: CubeSource | None = None
    cube_error: str | None = None
    workers: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    def poll_workers(self) -> None:
        """Reap finished worker processes (so a killed one is not left a zombie)."""
        for job_id, proc in list(self.workers.items()):
            if proc.poll() is not None:
                del self.workers[job_id]


def open_serving(settings: Settings, engine: sa.Engine) -> Serving:
    """Open the model session and the cube (each optional: their absence is reported, not fatal)."""
    serving = Serving(settings=settings,
                      catalog=LayerCatalog(engine, settings.layers_dir, settings.layer_version_ttl_s,
                                           settings.infer_layers_kept),
                      tile_cache=TileCache(settings.tile_cache_entries,
                                           int(settings.tile_cache_mb * 2**20)),
                      context=ContextCatalog(settings.cube_dir, settings.state_dir / "context"))
    try:
        serving.model = InferenceEngine.from_settings(settings)
    except (ModelContractError, ValueError, OSError) as exc:
        serving.model_error = str(exc)
        log.warning("no model: %s", exc)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for a bad file
        serving.model_error = f"{exc.__class__.__name__}: {exc}"
        log.warning("model failed to load: %s", serving.model_error)
    try:
        serving.cube = CubeSource.open(settings.cube_dir)
        if serving.model is not None:
            serving.cube.check_model(serving.model.card)
    except (CubeMissingError, ModelContractError, OSError, KeyError) as exc:
        serving.cube_error = str(exc)
        log.warning("no cube for on-request inference: %s", exc)
    try:
        reap_dead_jobs(engine)
        reap_stale_versions(engine)
    except sa.exc.SQLAlchemyError as exc:
        log.warning("could not check for dead jobs: %s", exc.__class__.__name__)
    return serving


def get_serving(request: Request) -> Serving:
    """The app's serving state."""
    return request.app.state.serving


ServingDep = Annotated[Serving, Depends(get_serving)]
