"""Response models of the JSON the service returns, and the problem body of every error (``XPublic`` style).

The models describe the bodies as they are sent; optional keys (default ``None``) are left out of a body
when they do not apply, so the documented shape is the returned one.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from backend.layers.cog import LayerKind, ScoreKind

# -- errors ------------------------------------------------------------------------------------------


class ValidationIssue(BaseModel):
    """One problem of a request that failed validation (at most a short excerpt of the input)."""

    type: str | None = Field(description="Kind of problem, e.g. missing, int_parsing, extra_forbidden")
    loc: list[str | int] = Field(description="Where: query, path, body and the field names")
    msg: str = Field(description="What is wrong and what is allowed")
    input: str | None = Field(default=None, description="A short excerpt of the value sent")


class Problem(BaseModel):
    """The body of every 4xx and 5xx answer: what was wrong, in words."""

    detail: str | list[ValidationIssue] = Field(
        description="What was wrong and what is allowed; a list of problems when the request failed validation")
    parameter: str | None = Field(default=None, description="The query or body parameter at fault")
    errors: int | None = Field(default=None, description="Number of validation problems (the first ten are listed)")
    running_job: int | None = Field(default=None, description="The job already running (409)")


#: What each error status means for this service (one description per status).
PROBLEM_MEANINGS: dict[int, str] = {
    400: "A Host header outside M3_ALLOWED_HOSTS, a Content-Length that is not a number, a body that cannot be "
         "read, or a tile parameter TiTiler cannot parse (band-math expression, format, algorithm parameters).",
    401: "No admin bearer token was sent.",
    403: "The admin bearer token is wrong.",
    404: "Not found: an unknown layer, job or tile, or no layers published yet.",
    409: "A job of this kind is already running (running_job names it).",
    413: "The request body is larger than M3_MAX_BODY_BYTES, or the box covers more cells than allowed.",
    422: "A parameter is invalid (out of range, unknown, malformed, or given more than once); the detail says "
         "what is allowed.",
    429: "The server is busy with requests of this kind (its pool and queue are full); Retry-After says when "
         "to retry.",
    503: "The database, model or cube is unavailable.",
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries documenting these error statuses (backend.api.openapi gives each the Problem body)."""
    return {code: {"description": PROBLEM_MEANINGS[code]} for code in codes}


# -- health ------------------------------------------------------------------------------------------


class TileCacheStats(BaseModel):
    """Counters of the in-process tile cache."""

    hits: int
    misses: int
    bytes: int


class HealthPublic(BaseModel):
    """Health of the service: database, model, execution provider, layer version."""

    status: Literal["ok", "unavailable"]
    version: str
    database: str = Field(description="ok, or unavailable with the reason")
    model: str | None = Field(description="The loaded model's name (null when none is loaded)")
    provider: str | None = Field(description="The onnxruntime execution provider in use")
    layer_version: int | None = Field(description="The layer version being served (null before the first)")
    sites: int | None = Field(default=None, description="Known sites in the store (absent when the database is down)")
    model_error: str | None = Field(default=None, description="Why no model is loaded (only then)")
    cube: str | None = Field(default=None, description="First 12 hex digits of the served cube's sha256")
    tile_cache: TileCacheStats | None = None


# -- sites and species -------------------------------------------------------------------------------


class PointGeometry(BaseModel):
    """A GeoJSON point, lon/lat (EPSG:4326)."""

    type: Literal["Point"]
    coordinates: list[float] = Field(min_length=2, max_length=2)


class SiteProperties(BaseModel):
    """What a source recorded about a site."""

    source: str
    record_id: str
    name: str | None
    state: str | None = Field(description="US postal code of the state the point lies in")
    species: list[str] = Field(description="Canonical commodity ids")
    commodities: list[str] = Field(description="Commodities as the source named them")
    deposit_types: list[str]
    rank: str | None = Field(description="Site rank or development status as the source gave it")


class SiteFeature(BaseModel):
    """A known site as a GeoJSON Feature."""

    type: Literal["Feature"]
    id: int
    geometry: PointGeometry
    properties: SiteProperties


class Link(BaseModel):
    """A link to another page."""

    rel: str
    type: str
    href: str


class SitesPage(BaseModel):
    """A page of known sites as a GeoJSON FeatureCollection, with the cursor of the next page."""

    type: Literal["FeatureCollection"]
    features: list[SiteFeature]
    number_returned: int
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page")
    links: list[Link]


class SpeciesPublic(BaseModel):
    """A species with its count of known sites."""

    id: str
    label: str
    sites: int
    target: bool = Field(description="One of the M3 target species")


class SpeciesList(BaseModel):
    """Every species with at least one known site, and the M3 targets."""

    species: list[SpeciesPublic]


class CommodityPublic(BaseModel):
    """A commodity of the store with its count of known sites."""

    id: str = Field(description="Canonical commodity id (the species ids of /api/sites and the site tiles)")
    label: str
    sites: int
    target: bool = Field(description="One of the M3 target species")


class CommodityList(BaseModel):
    """Every commodity some known site records, most sites first, with the store's totals."""

    sites: int = Field(description="Known sites in the store")
    unrecognised: int = Field(description="Sites none of whose commodities the vocabulary recognises (they show "
                                          "under every commodity only)")
    bounds: list[float] | None = Field(min_length=4, max_length=4,
                                       description="minx,miny,maxx,maxy of every site (null when there are none)")
    commodities: list[CommodityPublic]


class VectorLayer(BaseModel):
    """A layer of a vector tile set and its fields (TileJSON ``vector_layers``)."""

    id: str
    description: str
    minzoom: int
    maxzoom: int
    fields: dict[str, str]


class SiteTileJSON(BaseModel):
    """TileJSON 3.0.0 of the site vector tiles for one commodity filter, with the aggregation grid."""

    tilejson: Literal["3.0.0"]
    name: str
    description: str
    tiles: list[str]
    minzoom: int
    maxzoom: int
    bounds: list[float] | None = Field(min_length=4, max_length=4, description=(
        "minx,miny,maxx,maxy of the matching sites; a client asks for no tile outside (null: no site matches)"))
    vector_layers: list[VectorLayer]
    grid: int = Field(description="Cells per tile side: each tile holds one point per occupied cell")
    sites: int = Field(description="Sites matching the filter")


# -- layers ------------------------------------------------------------------------------------------


class LayerPublic(BaseModel):
    """A published layer with its default style and tile URLs."""

    id: str = Field(description="<species>.<kind>")
    species: str
    kind: LayerKind
    description: str
    colormap: str
    rescale: list[float] = Field(min_length=2, max_length=2)
    tilejson: str
    tiles: str
    stats: dict[str, float | int | None] = Field(description="count, min, max and mean of the layer")


class LayersPublic(BaseModel):
    """The layer version being served and its layers (layer_version null before the first re-inference)."""

    layer_version: int | None
    layers: list[LayerPublic]
    published_at: str | None = None
    model: dict[str, Any] | None = Field(default=None, description="Model card summary")
    ensemble: dict[str, Any] | None = Field(default=None, description="Masks, seeds and evaluations")
    detail: str | None = Field(default=None, description="Why there are no layers (only then)")


# -- clusters ----------------------------------------------------------------------------------------


class ClusterSite(BaseModel):
    """A known site (of any commodity) inside a flagged cluster."""

    id: int
    name: str | None
    species: list[str] = Field(description="The modelled species the site records")
    commodities: list[str] = Field(description="Every commodity the site records (sand_and_gravel, clay, ...)")


class NearestSite(BaseModel):
    """The known site of the cluster's species nearest to it."""

    id: int
    name: str | None
    source: str
    lon: float
    lat: float


class ClusterProperties(BaseModel):
    """Scores, size, the nearest known site of the species and the known sites inside a flagged cluster."""

    species: str
    rank: int = Field(description="1 = highest score of its species in its version")
    score: float = Field(description="mean_score x ln(1 + n_cells) x ln(1 + km to nearest_site, capped at 50)")
    mean_score: float = Field(description="Mean ensemble probability of the species over the cluster's cells")
    max_score: float
    n_cells: int
    area_km2: float
    n_sites: int = Field(description="Known sites of any commodity inside the cluster (the first 50 are listed)")
    sites: list[ClusterSite]
    nearest_site: NearestSite | None = Field(description="Nearest known site of the species (null: none known)")
    nearest_distance_m: float | None = Field(description="Distance from the cluster to nearest_site, in metres")
    label_point: list[float] = Field(min_length=2, max_length=2, description="A lon/lat point inside the cluster")
    layer_version: int


class ClusterGeometry(BaseModel):
    """A GeoJSON (multi)polygon."""

    type: Literal["Polygon", "MultiPolygon"]
    coordinates: list[Any]


class ClusterFeature(BaseModel):
    """A flagged cluster as a GeoJSON Feature."""

    type: Literal["Feature"]
    id: int
    geometry: ClusterGeometry
    properties: ClusterProperties


class ClustersCollection(BaseModel):
    """Flagged clusters of the layer version being served, as a GeoJSON FeatureCollection."""

    type: Literal["FeatureCollection"]
    layer_version: int | None
    features: list[ClusterFeature]
    number_returned: int | None = None  # absent before the first layer version


# -- identify ----------------------------------------------------------------------------------------


class IdentifyCell(BaseModel):
    """The grid cell a point falls in."""

    col: int
    row: int
    crs: str = Field(description="The grid's CRS (equal-area, 1-mile cells)")
    center: list[float] = Field(min_length=2, max_length=2, description="lon/lat of the cell centre")


class IdentifyResult(BaseModel):
    """The layers of one commodity at one cell, whether the cell is surveyed, and the nearest known site."""

    layer_version: int
    species: str
    lon: float
    lat: float
    cell: IdentifyCell
    prospectivity: float | None = Field(description="Mean ensemble probability (null: no value), calibrated when "
                                                    "the model has a calibration; not the chance of a deposit")
    uncertainty: float | None = Field(description="Standard deviation over the evaluations (null: fewer than two)")
    evaluations: int | None = Field(description="How many evaluations hid the cell (null: outside the grid's land)")
    discrepancy: float | None = Field(description="Prospectivity where no record of the commodity exists, inside "
                                                  "coverage only (null elsewhere)")
    in_coverage: bool | None = Field(description="Whether the cell lies in a state with systematic records "
                                                 "(null: no cube to tell)")
    nearest_site: NearestSite | None = Field(description="Nearest known site of the commodity (null: none known)")
    nearest_distance_m: float | None = Field(description="Distance from the point to nearest_site, in metres "
                                                         "on EPSG:5070")
    note: str = Field(description="How to read the values")


# -- box statistics and infill -----------------------------------------------------------------------


class BoxStatistics(BaseModel):
    """Statistics of the finite cells of one species in a box (only ``cells`` when there are none)."""

    cells: int
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    p10: float | None = None
    p50: float | None = None
    p90: float | None = None
    max: float | None = None
    area_km2_above_0_5: float | None = None


class GridWindow(BaseModel):
    """A window of the 1-mile grid."""

    col: int
    row: int
    width: int
    height: int


class ProspectivityStats(BaseModel):
    """Per species statistics of one layer kind inside a box."""

    layer_version: int
    kind: ScoreKind
    description: str
    bbox: list[float] = Field(min_length=4, max_length=4)
    crs: str
    cell_km2: float
    window: GridWindow
    species: dict[str, BoxStatistics]


class InferSpeciesStatistics(BoxStatistics):
    """Box statistics of a species after infilling, with the cells hidden and the ensemble spread."""

    hidden_cells: int
    std_mean: float | None = Field(description="Mean ensemble standard deviation (null without finite cells)")


class InferLayer(BaseModel):
    """The temporary tile layer of an infill result."""

    id: str
    species: str
    bounds: list[float] = Field(min_length=4, max_length=4)
    tilejson: str
    tiles: str


class InferImage(BaseModel):
    """The rendered layer as a base64 PNG."""

    species: str
    format: Literal["png"]
    crs: str
    bounds: list[float] = Field(min_length=4, max_length=4)
    data: str = Field(description="Base64 PNG")


class InferResult(BaseModel):
    """What the model infilled in a box: statistics per species and the rendered layer."""

    bbox: list[float] = Field(min_length=4, max_length=4)
    window: GridWindow
    cells: int
    evaluations: int
    seconds: float
    provider: str
    hidden_species: list[str]
    species: dict[str, InferSpeciesStatistics]
    layer: InferLayer = Field(description="The layer of the drawn species (render)")
    layers: list[InferLayer] = Field(description="The drawn species' layer, then one for each other hidden species")
    image: InferImage


# -- admin jobs --------------------------------------------------------------------------------------


class JobCreated(BaseModel):
    """A started job and the URL to follow it."""

    job_id: int
    status: Literal["running"]
    url: str


class JobPublic(BaseModel):
    """A job: status, progress, message, error and the layer version it published."""

    id: int
    kind: str
    status: Literal["running", "succeeded", "failed"]
    progress: float = Field(description="0..1")
    message: str | None
    params: dict[str, Any]
    pid: int | None
    host: str | None
    layer_version: int | None
    error: str | None
    created_at: str | None
    updated_at: str | None
    finished_at: str | None


# -- page helpers ------------------------------------------------------------------------------------


class ColormapStops(BaseModel):
    """Evenly spaced colours of a colormap."""

    name: str
    stops: list[str] = Field(description="#rrggbb colours")


class CoverageCollection(BaseModel):
    """The covered states of the cube's coverage rule as GeoJSON."""

    type: Literal["FeatureCollection"]
    features: list[dict[str, Any]]
    description: str | None


class PageConfig(BaseModel):
    """Settings the map page needs."""

    basemap_url: str | None
    basemap_attribution: str | None


# -- context layers ----------------------------------------------------------------------------------


class ContextInput(BaseModel):
    """A file a context layer was computed from, with its checksum and its source and licence."""

    file: str = Field(description="The input file as cube.json names it")
    sha256: str | None = Field(description="Its checksum in cube.json (null when cube.json records none)")
    source: str | None = Field(description="Source and licence from the data provenance table (null if unrecorded)")


class ContextLayerPublic(BaseModel):
    """A context layer (the hillshade, or a covariate of the cube) and its tile URLs."""

    id: str = Field(description="Layer id in /tiles/context/{context_id}")
    title: str
    kind: Literal["hillshade", "covariate"]
    units: str | None
    description: str
    colormap: str | None = Field(description="Default colormap of its tiles (gray for the hillshade)")
    rescale: list[float] | None = Field(description="Default value range of the colours, in the layer's units "
                                                    "(mean +- 2 standard deviations; null for the hillshade)")
    tilejson: str
    tiles: str
    inputs: list[ContextInput] = Field(description="Provenance: the input files it was computed from")


class CoverageSourcePublic(BaseModel):
    """A systematic source of survey records and the state it covers."""

    name: str
    state: str
    source: str


class SurveyCoverage(BaseModel):
    """Where records are systematic: the covered states of the cube's coverage rule and their sources."""

    covered_states: list[str] = Field(description="Two-letter codes of the states with systematic records")
    description: str
    sources: list[CoverageSourcePublic]


class ContextLayersPublic(BaseModel):
    """The context layers of the cube being served, and its survey coverage."""

    layers: list[ContextLayerPublic]
    coverage: SurveyCoverage | None = Field(description="null before a cube is built")
    detail: str | None = Field(default=None, description="Why there are no layers (only then)")
