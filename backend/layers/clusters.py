"""Flagged clusters: where the model expects a species that no record within a set distance shows.

A cell is flagged for a species when it is far from every known record of that species (every point of the
cell at least ``distance_m`` from every point of every cell that holds one), lies inside survey coverage with
enough surveyed ground around it (:func:`surveyed_share`), and its ensemble-mean probability is in the top
``top_share`` of such cells for that species. Connected flagged
cells form a cluster. Clusters are stored with the nearest known site of their species (and its distance) and
with the known sites of any commodity inside them, and ranked by probability, size and distance to known ground.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
import shapely
import sqlalchemy as sa
from rasterio.features import shapes
from scipy import ndimage

from backend.cube.grid import Grid, project_geometry

log = logging.getLogger(__name__)

#: Known sites listed per cluster (n_sites counts them all).
SITES_LISTED = 50
#: Distances to the nearest known site of the species count in the ranking up to this many km.
NOVELTY_CAP_KM = 50.0


@dataclass(frozen=True)
class Cluster:
    """A connected region of flagged cells, in lon/lat."""

    species: str
    mean_score: float
    max_score: float
    n_cells: int
    area_km2: float
    geometry: shapely.MultiPolygon
    footprint: shapely.Geometry  # the same cells on the grid CRS (distances are measured there)


def far_from_records(labels: np.ndarray, cell_m: float, distance_m: float) -> np.ndarray:
    """Cells every point of which lies at least ``distance_m`` from every point of every cell with a record.

    A record can sit anywhere in its cell, so the test uses the smallest gap between two cells: cells offset by
    (di, dj) are ``cell_m * hypot(max(|di| - 1, 0), max(|dj| - 1, 0))`` apart. Cells holding a record are never
    far from one.
    """
    present = labels > 0
    if distance_m <= 0:
        return ~present
    reach = int(np.ceil(distance_m / cell_m)) + 1
    offsets = np.arange(-reach, reach + 1)
    di, dj = np.meshgrid(offsets, offsets, indexing="ij")
    gap = cell_m * np.hypot(np.maximum(np.abs(di) - 1, 0), np.maximum(np.abs(dj) - 1, 0))
    return ~ndimage.binary_dilation(present, structure=gap < distance_m)


def surveyed_share(coverage: np.ndarray, radius: int) -> np.ndarray:
    """Share of surveyed cells in the (2r+1)^2 square around each cell (cells beyond the grid count as unsurveyed).

    A model reads every unsurveyed cell without a record as unknown, like a hidden region; a cell with little
    surveyed ground around it is predicted from unknown ground alone (a coast, an island, a state border),
    which training never showed on that scale.
    """
    if radius <= 0:
        return coverage.astype(np.float32)
    return ndimage.uniform_filter(coverage.astype(np.float32), size=2 * radius + 1, mode="constant", cval=0.0)


def flag_threshold(discrepancy: np.ndarray, eligible: np.ndarray, top_share: float) -> float | None:
    """The probability above which the top ``top_share`` of eligible, finite cells lie (None if there are none)."""
    values = discrepancy[eligible & np.isfinite(discrepancy)]
    if values.size == 0:
        return None
    return float(np.quantile(values, 1.0 - top_share))


def find_clusters(discrepancy: np.ndarray, grid: Grid, species: str, *, eligible: np.ndarray, threshold: float,
                  min_cells: int, limit: int) -> list[Cluster]:
    """Connected (8-neighbour) regions of eligible cells with ``discrepancy >= threshold``, of ``min_cells`` or more.

    The ``limit`` regions with the most evidence (mean score x log size) are polygonised on the grid and
    reprojected to lon/lat.
    """
    values = np.nan_to_num(discrepancy, nan=0.0)
    flagged = eligible & np.isfinite(discrepancy) & (values >= threshold) & (values > 0)
    labels, n = ndimage.label(flagged, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return []
    index = np.arange(1, n + 1)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    means = np.asarray(ndimage.mean(values, labels, index))
    maxes = np.asarray(ndimage.maximum(values, labels, index))
    evidence = means * np.log1p(sizes)
    keep = [int(i) for i in np.argsort(-evidence, kind="stable") if sizes[i] >= min_cells][:limit]
    if not keep:
        return []
    wanted = np.zeros(n + 1, dtype=bool)
    wanted[np.asarray(keep) + 1] = True
    kept_labels = np.where(wanted[labels], labels, 0).astype(np.int32)
    parts: dict[int, list[shapely.Polygon]] = {}
    for geom, value in shapes(kept_labels, mask=kept_labels > 0, connectivity=8, transform=grid.transform):
        parts.setdefault(int(value), []).append(shapely.geometry.shape(geom))
    cell_km2 = grid.cell * grid.cell / 1e6
    out = []
    for i in keep:
        merged = shapely.union_all(parts[i + 1])
        lonlat = project_geometry(merged, grid.crs, "EPSG:4326")
        multi = lonlat if isinstance(lonlat, shapely.MultiPolygon) else shapely.MultiPolygon([lonlat])
        out.append(Cluster(species=species, mean_score=float(means[i]), max_score=float(maxes[i]),
                           n_cells=int(sizes[i]), area_km2=float(sizes[i] * cell_km2), geometry=multi,
                           footprint=merged))
    return out


INSERT_SQL = sa.text("""
INSERT INTO clusters (layer_version, species, rank, mean_score, max_score, n_cells, area_km2, geom, nearest_site,
                      nearest_distance_m)
VALUES (:version, :species, 0, :mean, :max, :n_cells, :area, ST_Multi(ST_MakeValid(ST_GeomFromText(:wkt, 4326))),
        CAST(:nearest AS jsonb), :distance)
""")

SPECIES_SITES_SQL = sa.text("""
SELECT id, name, source, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM sites WHERE :species = ANY(species) ORDER BY id
""")

#: Known sites of any commodity inside each cluster of a version (subdivided pieces keep the index probes small).
INSIDE_SQL = sa.text("""
WITH pieces AS MATERIALIZED (
  SELECT id, ST_Subdivide(geom, 64) AS g FROM clusters WHERE layer_version = :version
), inside AS (
  SELECT DISTINCT p.id AS cluster_id, s.id, s.name, s.species, s.commodities
  FROM pieces p JOIN sites s ON s.geom && p.g AND ST_Intersects(s.geom, p.g)
), ranked AS (
  SELECT inside.*, row_number() OVER (PARTITION BY cluster_id ORDER BY id) AS k,
         count(*) OVER (PARTITION BY cluster_id) AS n
  FROM inside
)
UPDATE clusters c
SET n_sites = agg.n, sites = agg.list
FROM (
  SELECT cluster_id, max(n) AS n,
         jsonb_agg(jsonb_build_object('id', id, 'name', name, 'species', species, 'commodities', commodities)
                   ORDER BY k) FILTER (WHERE k <= :listed) AS list
  FROM ranked GROUP BY cluster_id
) agg
WHERE c.id = agg.cluster_id
""")

#: Score = mean probability x ln(1 + cells) x ln(1 + km to the nearest known site of the species, capped);
#: rank 1 is each species' highest score in its version.
RANK_SQL = sa.text("""
WITH scored AS (
  SELECT id, mean_score * ln(1 + n_cells) * ln(1 + least(coalesce(nearest_distance_m, 1e12) / 1000, :cap)) AS s
  FROM clusters WHERE layer_version = :version
), ranked AS (
  SELECT c.id, s.s, row_number() OVER (PARTITION BY c.species ORDER BY s.s DESC, c.id) AS r
  FROM clusters c JOIN scored s ON s.id = c.id
)
UPDATE clusters c SET score = ranked.s, rank = ranked.r FROM ranked WHERE c.id = ranked.id
""")


def nearest_sites(conn: sa.Connection, species: str, footprints: list[shapely.Geometry],
                  crs: str) -> list[tuple[dict | None, float | None]]:
    """For each footprint (grid CRS), the nearest known site of ``species`` and its distance in metres (exact)."""
    rows = conn.execute(SPECIES_SITES_SQL, {"species": species}).all()
    if not rows:
        return [(None, None)] * len(footprints)
    lonlat = shapely.MultiPoint([(r.lon, r.lat) for r in rows])
    points = shapely.get_parts(project_geometry(lonlat, "EPSG:4326", crs))
    tree = shapely.STRtree(points)
    (which, site), distance = tree.query_nearest(footprints, return_distance=True, all_matches=False)
    out: list[tuple[dict | None, float | None]] = [(None, None)] * len(footprints)
    for w, k, d in zip(which, site, distance, strict=True):
        r = rows[int(k)]
        out[int(w)] = ({"id": r.id, "name": r.name, "source": r.source, "lon": round(r.lon, 5),
                        "lat": round(r.lat, 5)}, round(float(d)))
    return out


def store_clusters(conn: sa.Connection, version: int, found: list[Cluster], crs: str) -> int:
    """Insert a version's clusters with the nearest known site of their species (on ``crs``), sites inside, ranks."""
    nearest: dict[int, tuple[dict | None, float | None]] = {}
    for species in sorted({c.species for c in found}):
        idx = [i for i, c in enumerate(found) if c.species == species]
        nearest.update(zip(idx, nearest_sites(conn, species, [found[i].footprint for i in idx], crs), strict=True))
    rows = [{"version": version, "species": c.species, "mean": c.mean_score, "max": c.max_score,
             "n_cells": c.n_cells, "area": c.area_km2, "wkt": c.geometry.wkt,
             "nearest": None if nearest[i][0] is None else json.dumps(nearest[i][0]), "distance": nearest[i][1]}
            for i, c in enumerate(found)]
    if rows:
        conn.execute(INSERT_SQL, rows)
        conn.execute(INSIDE_SQL, {"version": version, "listed": SITES_LISTED})
        conn.execute(RANK_SQL, {"version": version, "cap": NOVELTY_CAP_KM})
    log.info("stored %d clusters for layer version %d", len(rows), version)
    return len(rows)


TOP_SQL = sa.text("""
SELECT c.species, c.rank, c.score, c.mean_score, c.max_score, c.n_cells, c.area_km2, c.n_sites, c.sites,
       c.nearest_site, c.nearest_distance_m,
       ST_X(ST_PointOnSurface(c.geom)) AS lon, ST_Y(ST_PointOnSurface(c.geom)) AS lat
FROM clusters c JOIN layer_versions v ON v.id = c.layer_version AND v.is_current
WHERE (CAST(:species AS text) IS NULL OR c.species = :species)
ORDER BY c.score DESC, c.id
LIMIT :n
""")


def top_clusters(engine: sa.Engine, n: int = 5, species: str | None = None) -> list[dict]:
    """The ``n`` highest-scoring flagged clusters of the current version (see RANK_SQL).

    Each comes with its state (from the bundled outlines), label point, the nearest known site of its species and
    the known sites of any commodity inside it.
    """
    from backend.geo.boundaries import load_states

    with engine.connect() as conn:
        rows = conn.execute(TOP_SQL, {"n": n, "species": species}).mappings().all()
    states = load_states()
    out = []
    for row in rows:
        point = shapely.Point(row["lon"], row["lat"])
        state = next((s.name for s in states if s.geometry.contains(point)), "outside the states")
        out.append({**row, "state": state})
    return out
