"""Flagged clusters: connected regions of high discrepancy, polygonised and stored with the sites near them."""

from __future__ import annotations

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


@dataclass(frozen=True)
class Cluster:
    """A connected region of discrepancy above the threshold, in lon/lat."""

    species: str
    mean_score: float
    max_score: float
    n_cells: int
    area_km2: float
    geometry: shapely.MultiPolygon


def find_clusters(discrepancy: np.ndarray, grid: Grid, species: str, threshold: float, min_cells: int,
                  limit: int) -> list[Cluster]:
    """Connected (8-neighbour) regions of ``discrepancy > threshold`` with at least ``min_cells`` cells.

    The ``limit`` regions with the highest mean score are polygonised on the grid and reprojected to lon/lat.
    """
    flagged = np.nan_to_num(discrepancy, nan=0.0) > threshold
    labels, n = ndimage.label(flagged, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return []
    index = np.arange(1, n + 1)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    values = np.nan_to_num(discrepancy, nan=0.0)
    means = np.asarray(ndimage.mean(values, labels, index))
    maxes = np.asarray(ndimage.maximum(values, labels, index))
    keep = [int(i) for i in np.argsort(-means) if sizes[i] >= min_cells][:limit]
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
                           n_cells=int(sizes[i]), area_km2=float(sizes[i] * cell_km2), geometry=multi))
    return out


INSERT_SQL = sa.text("""
INSERT INTO clusters (layer_version, species, rank, mean_score, max_score, n_cells, area_km2, geom)
VALUES (:version, :species, :rank, :mean, :max, :n_cells, :area,
        ST_Multi(ST_MakeValid(ST_GeomFromText(:wkt, 4326))))
""")

SITES_SQL = sa.text("""
WITH pieces AS MATERIALIZED (
  SELECT id, ST_Subdivide(ST_Transform(geom, 5070), 64) AS g
  FROM clusters WHERE layer_version = :version
), near AS (
  SELECT p.id AS cluster_id, s.id, s.name, s.species, round(min(ST_Distance(ST_Transform(s.geom, 5070), p.g)))
         AS distance_m
  FROM pieces p
  JOIN sites s ON s.geom && ST_Transform(ST_Expand(p.g, :distance), 4326)
              AND ST_DWithin(ST_Transform(s.geom, 5070), p.g, :distance)
  GROUP BY p.id, s.id, s.name, s.species
), ranked AS (
  SELECT near.*, row_number() OVER (PARTITION BY cluster_id ORDER BY distance_m, id) AS k,
         count(*) OVER (PARTITION BY cluster_id) AS n
  FROM near
)
UPDATE clusters c
SET n_sites = agg.n,
    sites = agg.list
FROM (
  SELECT cluster_id, max(n) AS n,
         jsonb_agg(jsonb_build_object('id', id, 'name', name, 'species', species, 'distance_m', distance_m)
                   ORDER BY k) FILTER (WHERE k <= :listed) AS list
  FROM ranked GROUP BY cluster_id
) agg
WHERE c.id = agg.cluster_id
""")


def store_clusters(conn: sa.Connection, version: int, found: list[Cluster], distance_m: float) -> int:
    """Insert clusters of a version (ranked per species) and attach the known sites within ``distance_m``."""
    by_species: dict[str, int] = {}
    rows = []
    for c in sorted(found, key=lambda c: (c.species, -c.mean_score)):
        by_species[c.species] = by_species.get(c.species, 0) + 1
        rows.append({"version": version, "species": c.species, "rank": by_species[c.species],
                     "mean": c.mean_score, "max": c.max_score, "n_cells": c.n_cells, "area": c.area_km2,
                     "wkt": c.geometry.wkt})
    if rows:
        conn.execute(INSERT_SQL, rows)
        # distances on the equal-area grid CRS; subdivided pieces keep the index probes small
        conn.execute(SITES_SQL, {"version": version, "distance": distance_m, "listed": SITES_LISTED})
    log.info("stored %d clusters for layer version %d", len(rows), version)
    return len(rows)


TOP_SQL = sa.text("""
SELECT c.species, c.mean_score, c.max_score, c.area_km2, c.n_sites, c.sites,
       ST_X(ST_PointOnSurface(c.geom)) AS lon, ST_Y(ST_PointOnSurface(c.geom)) AS lat
FROM clusters c JOIN layer_versions v ON v.id = c.layer_version AND v.is_current
WHERE (CAST(:species AS text) IS NULL OR c.species = :species)
ORDER BY c.mean_score * ln(1 + c.n_cells) DESC
LIMIT :n
""")


def top_clusters(engine: sa.Engine, n: int = 5, species: str | None = None) -> list[dict]:
    """The ``n`` flagged clusters of the current version with the most evidence (mean score x log size).

    Each comes with its state (from the bundled outlines), label point and the known sites it overlaps.
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
