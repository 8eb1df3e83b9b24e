"""On-request infill: run the model now on a box, hiding chosen species and regions."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, ConfigDict, Field
from rasterio.errors import WindowError
from rasterio.windows import Window
from rio_tiler.colormap import cmap
from rio_tiler.models import ImageData

from backend.api.errors import BadQuery
from backend.api.query import BBox, parse_bbox, parse_species
from backend.api.schemas import (
    GridWindow,
    InferImage,
    InferLayer,
    InferResult,
    InferSpeciesStatistics,
    problems,
)
from backend.api.serve_errors import BoxTooLarge, ServiceNotReady
from backend.api.serving import Serving, ServingDep
from backend.api.shared import array_stats, render_query
from backend.inference.infill import InfillRequest, InfillResult, run_infill
from backend.layers.catalog import TemporaryLayer
from backend.layers.cog import read_geographic_bounds, write_layer
from backend.memory import release_freed_memory

router = APIRouter(prefix="/api", tags=["infer"], responses=problems(413, 429, 503))

Box = tuple[float, float, float, float]

#: Most hidden regions, and most species named in a list, of one request.
MAX_REGIONS = 32
MAX_SPECIES = 64
#: Largest seed of the random masks.
MAX_SEED = 2**32 - 1


class InferCreate(BaseModel):
    """An infill request: the box, what to hide, and how many evaluations (unknown fields are refused)."""

    model_config = ConfigDict(extra="forbid")

    bbox: Box | str = Field(description="minx,miny,maxx,maxy in lon/lat (a string or four numbers)",
                            examples=["-121.2,38.8,-120.4,39.4"])
    species: list[str] | None = Field(default=None, max_length=MAX_SPECIES,
                                      description="Species to report (default: all of the model's)")
    hide_species: list[str] = Field(default_factory=list, max_length=MAX_SPECIES,
                                    description="Species hidden from the model in the box")
    hide_regions: list[Box] = Field(default_factory=list, max_length=MAX_REGIONS,
                                    description=f"Lon/lat boxes inside the box where they are hidden (default: the "
                                                f"whole box; at most {MAX_REGIONS}; one outside the box is a 422)")
    ensemble: int = Field(default=1, ge=1, strict=True,
                          description="Evaluations, at most M3_INFER_MAX_ENSEMBLE (default 16); the first hides only "
                                      "what you chose, the others add seeded random masks")
    seed: int = Field(default=0, ge=0, le=MAX_SEED, strict=True, description=f"Seed of the random masks, 0..{MAX_SEED}")
    render: str | None = Field(default=None, description="Species drawn as the returned layer "
                                                        "(default: the first hidden, else the first reported)")


def _box(value: Box | str, parameter: str) -> BBox:
    """A BBox from a string or four numbers (BadQuery otherwise)."""
    text = value if isinstance(value, str) else ",".join(str(v) for v in value)
    box = parse_bbox(text)
    if box is None:
        raise BadQuery(parameter, f"{parameter} is required: minx,miny,maxx,maxy in lon/lat")
    return box


def _window(serving: Serving, box: BBox, parameter: str) -> Window:
    """The grid window of a box (BadQuery when it misses the grid)."""
    assert serving.cube is not None
    win = serving.cube.grid.window_for_bbox((box.minx, box.miny, box.maxx, box.maxy))
    if win.width == 0 or win.height == 0:
        raise BadQuery(parameter, f"{parameter} lies outside the grid (the contiguous US)")
    return win


def _region(serving: Serving, box: BBox, window: Window, value: Box, index: int) -> Window:
    """The grid window of a hidden region, clipped to the box's window (BadQuery when it lies outside the box)."""
    parameter = f"hide_regions[{index}]"
    region = _box(value, parameter)
    if region.minx >= box.maxx or region.maxx <= box.minx or region.miny >= box.maxy or region.maxy <= box.miny:
        raise BadQuery("hide_regions", f"{parameter} {[region.minx, region.miny, region.maxx, region.maxy]} lies "
                                       "outside the bbox; a hidden region must overlap the box")
    win = _window(serving, region, parameter)
    try:
        return win.intersection(window)
    except WindowError:
        raise BadQuery("hide_regions", f"{parameter} covers no cell of the bbox") from None


def _png(values: np.ndarray) -> bytes:
    """A viridis PNG of probabilities (transparent where NaN)."""
    img = ImageData(np.ma.masked_invalid(values[None].astype(np.float32)))
    return img.rescale(in_range=((0.0, 1.0),)).render(img_format="PNG", colormap=cmap.get("viridis"))


@dataclass(frozen=True)
class _Plan:
    """A checked infill request: the box and its grid window, the species to report, hide and draw."""

    box: BBox
    window: Window
    report: list[str]
    hide: list[str]
    regions: tuple[Window, ...]
    render: str

    @property
    def cells(self) -> int:
        """Cells of the box's window."""
        return int(self.window.width * self.window.height)


def _plan(serving: Serving, body: InferCreate, species: list[str]) -> _Plan:
    """Check a request against the grid, the model's species and the size limits (BadQuery, BoxTooLarge)."""
    settings = serving.settings
    box = _box(body.bbox, "bbox")
    window = _window(serving, box, "bbox")
    cells = int(window.width * window.height)
    if cells > settings.infer_max_cells:
        side = int(settings.infer_max_cells ** 0.5)
        raise BoxTooLarge("bbox", f"the box covers {int(window.width)} x {int(window.height)} = {cells} cells; at "
                                  f"most {settings.infer_max_cells} cells (about {side} x {side}) are allowed")
    report = (parse_species(",".join(body.species), species) if body.species else []) or species
    hide = parse_species(",".join(body.hide_species), species, "hide_species") if body.hide_species else []
    if not 1 <= body.ensemble <= settings.infer_max_ensemble:
        raise BadQuery("ensemble", f"ensemble {body.ensemble} is outside 1..{settings.infer_max_ensemble}")
    regions = tuple(_region(serving, box, window, r, i) for i, r in enumerate(body.hide_regions))
    drawn = parse_species(body.render, species, "render") if body.render else []
    if body.render is not None and len(drawn) != 1:
        raise BadQuery("render", f"render names one species of: {', '.join(species)}")
    render = drawn[0] if drawn else (hide[0] if hide else report[0])
    return _Plan(box, window, report, hide, regions, render)


def _statistics(result: InfillResult, species: list[str], report: list[str],
                cell_km2: float) -> dict[str, InferSpeciesStatistics]:
    """Statistics of the mean probability of each reported species, its hidden cells and mean spread."""
    stats = {}
    for sp in report:
        i = species.index(sp)
        spread = result.std[i][np.isfinite(result.std[i])]
        stats[sp] = InferSpeciesStatistics(**array_stats(result.mean[i], cell_km2),
                                           hidden_cells=int(result.hidden[i].sum()),
                                           std_mean=float(spread.mean()) if spread.size else None)
    return stats


def _publish(serving: Serving, values: np.ndarray, window: Window, render: str) -> TemporaryLayer:
    """Write a temporary tile layer of ``values`` on ``window`` and add it to the catalog."""
    assert serving.cube is not None
    grid = serving.cube.grid
    layer_id = f"infer-{uuid.uuid4().hex[:16]}.{render}"
    folder = serving.catalog.temporary_dir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{layer_id}.tif"
    write_layer(values, grid.crs, grid.window_transform(window), path)
    layer = TemporaryLayer(layer_id, path, read_geographic_bounds(path))
    serving.catalog.add_temporary(layer)
    return layer


def _layers(request: Request, serving: Serving, result: InfillResult, species: list[str],
            plan: _Plan) -> list[InferLayer]:
    """Temporary tile layers of the drawn species, then of every other hidden species (to switch between them)."""
    base = str(request.base_url).rstrip("/")
    query = render_query("prospectivity")
    layers = []
    for name in dict.fromkeys([plan.render, *plan.hide]):
        layer = _publish(serving, result.mean[species.index(name)], plan.window, name)
        tiles = f"{base}/tiles/{layer.id}"
        layers.append(InferLayer(id=layer.id, species=name, bounds=list(layer.bounds),
                                 tilejson=f"{tiles}/WebMercatorQuad/tilejson.json?{query}",
                                 tiles=f"{tiles}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png?{query}"))
    return layers


@router.post("/infer", summary="Run the model now on a box, hiding chosen species and regions",
             response_model=InferResult, response_model_exclude_unset=True)
def create_infer(request: Request, serving: ServingDep,
                 body: Annotated[InferCreate, Body(openapi_examples={"hide zinc": {"value": {
                     "bbox": "-121.2,38.8,-120.4,39.4", "hide_species": ["zinc"], "ensemble": 1}}})]
                 ) -> InferResult:
    """Statistics per species in the box, and the rendered layer (PNG and a temporary tile layer)."""
    if serving.model is None:
        raise ServiceNotReady(f"no model loaded: {serving.model_error}")
    if serving.cube is None:
        raise ServiceNotReady(f"no cube loaded: {serving.cube_error}")
    settings = serving.settings
    species = list(serving.model.card.species)
    plan = _plan(serving, body, species)
    window = plan.window
    try:
        result = run_infill(serving.model, serving.cube, InfillRequest(
            window=window, hide_species=tuple(plan.hide), hide_windows=plan.regions, ensemble=body.ensemble,
            seed=body.seed, context=settings.infer_context_cells), settings.window_size, settings.window_overlap)
    finally:
        release_freed_memory()  # the run's temporaries are freed: give their pages back after a large box
    grid = serving.cube.grid
    values = result.mean[species.index(plan.render)]
    layers = _layers(request, serving, result, species, plan)
    layer = layers[0]
    return InferResult(
        bbox=[plan.box.minx, plan.box.miny, plan.box.maxx, plan.box.maxy],
        window=GridWindow(col=int(window.col_off), row=int(window.row_off), width=int(window.width),
                          height=int(window.height)),
        cells=plan.cells, evaluations=result.evaluations, seconds=round(result.seconds, 3),
        provider=serving.model.provider, hidden_species=plan.hide,
        species=_statistics(result, species, plan.report, grid.cell * grid.cell / 1e6),
        layer=layer, layers=layers,
        image=InferImage(species=plan.render, format="png", crs=str(grid.crs), bounds=list(layer.bounds),
                         data=base64.b64encode(_png(values)).decode()),
    )
