"""Tiles of published layers through TiTiler: a layer id maps to a file; no client path or URL reaches GDAL.

Every size parameter has a maximum (SIZE_LIMITS); above it, or for a bad tile index or point, the answer is a
422 naming the parameter and its range, before any raster is read.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Annotated, Any

import attr
import shapely
from fastapi import APIRouter, Depends, Path, Query, Request
from morecantile import TileMatrixSet
from morecantile import tms as morecantile_tms
from morecantile.defaults import TileMatrixSets
from morecantile.errors import InvalidZoomError
from rio_tiler.colormap import cmap
from rio_tiler.models import ImageData
from rio_tiler.types import ColorMapType
from starlette.datastructures import QueryParams
from titiler.core.algorithm import BaseAlgorithm, algorithms
from titiler.core.dependencies import ImageRenderingParams
from titiler.core.factory import TilerFactory

from backend.api.errors import BadQuery
from backend.api.guards import excerpt
from backend.api.schemas import problems
from backend.api.serving import get_serving
from backend.api.shared import MAX_ZOOM
from backend.layers.cog import LAYER_KINDS
from backend.layers.reader import LayerReader
from backend.layers.render import render_layer_image

LAYER_ID_HELP = "A layer id from GET /api/layers, e.g. gold.prospectivity (or a temporary infer-... id)"
COLORMAPS = sorted(cmap.list())


#: The allowed range of each size parameter of the tile endpoints (inclusive).
SIZE_LIMITS: dict[str, tuple[float, float]] = {
    "tilesize": (64, 1024), "buffer": (0, 64), "padding": (0, 64), "max_size": (1, 2048), "width": (1, 2048),
    "height": (1, 2048), "histogram_bins": (1, 1024), "cover_scale": (1, 20), "minzoom": (0, 24),
    "maxzoom": (0, 24),
}
#: Most values of a list parameter (percentiles ``p``, categories ``c``, band indexes ``bidx``, ``rescale``).
MAX_LIST_VALUES = 32
#: Longest text parameter (``expression``, ``algorithm_params``, ``color_formula``).
MAX_TEXT = 500


def _number(name: str, text: str) -> float:
    """A finite number of a query or path parameter, or BadQuery."""
    try:
        value = float(text)
    except ValueError:
        raise BadQuery(name, f"{name} {text[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise BadQuery(name, f"{name} must be a finite number")
    return value


def _check_range(name: str, text: str) -> None:
    """BadQuery when a size parameter is outside its documented range."""
    lo, hi = SIZE_LIMITS[name]
    if name == "histogram_bins" and "," in text:  # explicit bin edges
        edges = [_number(name, t) for t in text.split(",")]
        if len(edges) - 1 > hi or edges != sorted(edges) or len(edges) < 2:
            raise BadQuery(name, f"histogram_bins edges must be 2..{int(hi) + 1} increasing numbers")
        return
    value = _number(name, text)
    if not lo <= value <= hi:
        raise BadQuery(name, f"{name} {value:g} is outside {lo:g}..{hi:g} (the maximum of this service)")


def _matrix_size(tms: str, z: int, parameter: str) -> tuple[int, int]:
    """(width, height) in tiles of zoom ``z`` of a tile matrix set, or BadQuery when the set has no such zoom.

    morecantile extrapolates past a set's last level; for sets whose tiles vary in width it cannot.
    """
    matrix_set = TILE_MATRIX_SETS.get(tms)
    try:
        matrix = matrix_set.matrix(z)
        return int(matrix.matrixWidth), int(matrix.matrixHeight)
    except (InvalidZoomError, OverflowError, ValueError):
        raise BadQuery(parameter, f"{parameter} {z} does not exist in tile matrix set {tms} (its levels are "
                                  f"{matrix_set.minzoom}..{matrix_set.maxzoom})") from None


def check_tile_query(request: Request) -> None:
    """Refuse ``url=``/``path=``, sizes over their maxima, bad percentiles, ranges, tile indexes and points."""
    query = request.query_params
    for name in ("url", "path"):
        if name in query:
            raise BadQuery(name, f"{name}= is not accepted: tiles are served for layer ids only "
                                 "(GET /api/layers lists them), never for a client-supplied path or URL")
    for name in SIZE_LIMITS:
        if name in query:
            _check_range(name, query[name])
    if "buffer" in query and _number("buffer", query["buffer"]) % 0.5:
        raise BadQuery("buffer", "buffer must be a multiple of 0.5 (0.5, 1, 1.5, ...)")
    for name in ("p", "c", "bidx", "rescale"):
        values = query.getlist(name)
        if len(values) > MAX_LIST_VALUES:
            raise BadQuery(name, f"{name} is given {len(values)} times; at most {MAX_LIST_VALUES}")
    for text in query.getlist("p"):
        if not 0 <= _number("p", text) <= 100:
            raise BadQuery("p", f"percentile p {text[:20]} is outside 0..100")
    for text in query.getlist("bidx"):
        if _number("bidx", text) != 1:
            raise BadQuery("bidx", f"bidx {text[:20]} does not exist: every layer has one band (bidx=1)")
    _check_texts(query)
    _check_tile_path(query, request.path_params)


def _check_texts(query: QueryParams) -> None:
    """BadQuery for a band other than b1, an over-long text, bad algorithm parameters or a bad histogram range."""
    for band in re.findall(r"\bb(\d+)\b", query.get("expression", "")):
        if band != "1":
            raise BadQuery("expression", f"expression names band b{band[:10]}: every layer has one band (b1)")
    for name in ("expression", "algorithm_params", "color_formula"):
        if len(query.get(name, "")) > MAX_TEXT:
            raise BadQuery(name, f"{name} is longer than {MAX_TEXT} characters")
    if "algorithm_params" in query:
        try:
            params = json.loads(query["algorithm_params"])
        except ValueError:
            params = None
        if not isinstance(params, dict):
            raise BadQuery("algorithm_params", "algorithm_params must be a JSON object of the algorithm's parameters, "
                                               'e.g. {"azimuth": 45}')
    if "histogram_range" in query:
        bounds = [_number("histogram_range", t) for t in query["histogram_range"].split(",")]
        if len(bounds) != 2 or bounds[0] >= bounds[1]:
            raise BadQuery("histogram_range", "histogram_range is min,max with min < max")


def _check_tile_path(query: QueryParams, path: dict[str, Any]) -> None:
    """BadQuery for zoom levels, a tile index or a point outside the tile matrix set or the globe."""
    tms = path.get("tileMatrixSetId")
    for name in ("minzoom", "maxzoom"):
        if name in query and tms in TILE_MATRIX_SETS.list():
            _matrix_size(tms, int(_number(name, query[name])), name)
    if "z" in path:
        z, x, y = (_number(k, str(path[k])) for k in ("z", "x", "y"))
        width = height = 2**min(max(int(z), 0), MAX_ZOOM)
        if not (0 <= z <= MAX_ZOOM and z == int(z)):
            raise BadQuery("z", f"zoom {z:g} does not exist: 0 <= z <= {MAX_ZOOM}")
        if tms in TILE_MATRIX_SETS.list():
            width, height = _matrix_size(tms, int(z), "z")
        if not (0 <= x < width and 0 <= y < height):
            raise BadQuery("z", f"tile {z:g}/{x:g}/{y:g} does not exist: 0 <= x < {width}, 0 <= y < {height}")
    if "lon" in path:
        lon, lat = _number("lon", str(path["lon"])), _number("lat", str(path["lat"]))
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise BadQuery("lon", "the point must lie within -180..180, -90..90 (lon,lat)")


#: Geometry types the statistics of a GeoJSON body are computed under.
AREA_TYPES = ("Polygon", "MultiPolygon")


def _feature_problem(feature: object) -> str | None:
    """Why rio-tiler cannot compute statistics under a GeoJSON feature (None when it can)."""
    if not isinstance(feature, dict):
        return None  # not a feature: FastAPI's validation of the body says so
    geometry = feature.get("geometry")
    if not isinstance(geometry, dict) or geometry.get("type") not in AREA_TYPES:
        kind = geometry.get("type") if isinstance(geometry, dict) else None
        named = f"a {excerpt(str(kind), 40)}" if kind else "no"
        return f"has {named} geometry; statistics need a Polygon or MultiPolygon"
    try:
        area = shapely.geometry.shape(geometry)
        bounds = area.bounds
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, shapely.errors.ShapelyError):
        return "has coordinates that do not form a polygon"
    if not all(math.isfinite(v) for v in bounds):
        return "has a non-finite or missing coordinate"
    if not (bounds[2] > bounds[0] and bounds[3] > bounds[1]):
        return "covers no area (its bounds have zero width or height)"
    return None


async def check_feature_body(request: Request) -> None:
    """Refuse a GeoJSON body with a feature that statistics cannot be computed under (422 naming the feature)."""
    if request.method != "POST":
        return
    try:
        body = json.loads(await request.body())  # as FastAPI reads it (NaN and Infinity included)
    except (ValueError, UnicodeDecodeError):
        return  # FastAPI's validation of the body says what is wrong
    features = [body] if isinstance(body, dict) and body.get("type") == "Feature" else (
        body.get("features") if isinstance(body, dict) else None)
    for index, feature in enumerate(features if isinstance(features, list) else []):
        problem = _feature_problem(feature)
        if problem is not None:
            raise BadQuery("geometry", f"feature {index} {problem}")


def layer_path(request: Request, layer_id: Annotated[str, Path(description=LAYER_ID_HELP)]) -> str:
    """The file of a layer id under the current version (404 for an unknown id)."""
    path, _ = get_serving(request).catalog.resolve(layer_id)
    return str(path)


def layer_colormap(
    layer_id: Annotated[str, Path(description=LAYER_ID_HELP)],
    colormap_name: Annotated[str | None, Query(description=f"One of: {', '.join(COLORMAPS)}")] = None,
) -> ColorMapType:
    """The named colormap, else the default of the layer's kind."""
    if colormap_name is not None and colormap_name not in COLORMAPS:
        raise BadQuery("colormap_name", f"colormap {colormap_name!r} unknown; known: {', '.join(COLORMAPS)}")
    kind = layer_id.rsplit(".", 1)[-1]
    default = LAYER_KINDS.get(kind, LAYER_KINDS["prospectivity"]).colormap
    return cmap.get(colormap_name or default)


class CheckedAlgorithm(BaseAlgorithm):
    """A TiTiler algorithm whose failure on the requested image is a 422 naming it, not a 500."""

    algorithm: BaseAlgorithm

    def __call__(self, img: ImageData) -> ImageData:
        """Apply the algorithm; an image it cannot work on (too small for a gradient, ...) is the request's problem."""
        try:
            return self.algorithm(img)
        except (ValueError, ArithmeticError, IndexError, TypeError, KeyError) as exc:
            raise BadQuery("algorithm", f"algorithm {type(self.algorithm).__name__} cannot run on this request: "
                                        f"{excerpt(str(exc), 200)}") from None


def checked_algorithm(
    algorithm: Annotated[BaseAlgorithm | None, Depends(algorithms.dependency)],
) -> BaseAlgorithm | None:
    """TiTiler's post-processing algorithm: refused when it needs more bands than a layer has, checked when run."""
    if algorithm is None:
        return None
    if (algorithm.input_nbands or 1) > 1:
        raise BadQuery("algorithm", f"algorithm {type(algorithm).__name__} needs {algorithm.input_nbands} bands; "
                                    "every layer has one")
    return CheckedAlgorithm(algorithm=algorithm, input_nbands=algorithm.input_nbands,
                            output_nbands=algorithm.output_nbands, output_dtype=algorithm.output_dtype,
                            output_min=algorithm.output_min, output_max=algorithm.output_max)


@attr.s(frozen=True)
class SharedTileMatrixSets(TileMatrixSets):
    """morecantile's registry of tile matrix sets without a deep copy on every ``get``.

    TiTiler looks the tile matrix set up on every tile request, and morecantile returns a deep copy of
    the pydantic model each time: profiled, that copy was the largest single cost of an uncached tile.
    The sets are only read, so one shared instance per identifier serves every request.
    """

    _shared: dict[str, TileMatrixSet] = attr.ib(factory=dict)

    def get(self, identifier: str) -> TileMatrixSet:
        """The tile matrix set ``identifier`` (InvalidIdentifier if unknown), loaded once."""
        found = self._shared.get(identifier)
        if found is None:
            found = self._shared[identifier] = super().get(identifier)
        return found


#: The tile matrix sets every tile endpoint uses.
TILE_MATRIX_SETS = SharedTileMatrixSets(morecantile_tms.tilematrixsets)


@dataclass
class LayerRenderingParams(ImageRenderingParams):
    """TiTiler rendering options with ``rescale=0,1`` by default (layers are probabilities)."""

    def __post_init__(self) -> None:
        """Default the rescale range, then let TiTiler parse it."""
        if not self.rescale:
            self.rescale = ["0,1"]
        super().__post_init__()


def build_tiles_router() -> APIRouter:
    """The TiTiler endpoints under ``/tiles/{layer_id}`` (tiles, TileJSON, info, statistics, point)."""
    factory = TilerFactory(
        reader=LayerReader,
        router=APIRouter(dependencies=[Depends(check_tile_query), Depends(check_feature_body)],
                         responses=problems(404, 429, 503)),
        router_prefix="/tiles/{layer_id}",
        path_dependency=layer_path,
        colormap_dependency=layer_colormap,
        render_dependency=LayerRenderingParams,
        render_func=render_layer_image,
        process_dependency=checked_algorithm,
        supported_tms=TILE_MATRIX_SETS,
        add_viewer=False,
        add_part=False,
        add_preview=False,
    )
    router = APIRouter()
    router.include_router(factory.router, prefix="/tiles/{layer_id}", tags=["tiles"])
    return router
