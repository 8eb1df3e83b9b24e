"""Reprojection of raw sites and the US filter: which state a point lies in, if any."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.strtree import STRtree

from backend.geo.boundaries import load_states
from backend.ingest.records import RawSite, RecordError, Reject, Site, check_lonlat, to_lonlat

#: Points this close (degrees, about 3 km) outside every state outline still count when the
#: source does not say they are elsewhere: the 1:10m outlines cut off coastal and lakeside mines.
COAST_TOLERANCE_DEG = 0.03


@dataclass
class Placement:
    """Sites kept, records rejected, and the count of good records outside the US."""

    sites: list[Site]
    rejects: list[Reject]
    outside_us: int


class StateLocator:
    """Point-in-state lookups against the bundled us-atlas outlines."""

    def __init__(self) -> None:
        states = load_states()
        self.codes = np.array([s.code for s in states])
        geoms = [s.geometry for s in states]
        for g in geoms:
            shapely.prepare(g)
        self.tree = STRtree(geoms)
        self.by_code = dict(zip(self.codes, geoms, strict=True))

    def locate(
        self, lon: np.ndarray, lat: np.ndarray, claims_us: np.ndarray, hints: np.ndarray | None = None
    ) -> np.ndarray:
        """State code per point ('' when outside); near-misses count only where claims_us is true.

        Where the source names a state and the point lies within the tolerance of that state's
        outline (a border mine that the generalised 1:10m outline puts next door), the source wins.
        """
        points = shapely.points(lon, lat)
        out = np.full(len(points), "", dtype=object)
        if len(points) == 0:
            return out
        idx_pt, idx_state = self.tree.query(points, predicate="intersects")
        out[idx_pt] = self.codes[idx_state]
        missing = np.flatnonzero((out == "") & claims_us)
        if len(missing):
            near_pt, near_state = self.tree.query_nearest(
                points[missing], max_distance=COAST_TOLERANCE_DEG, all_matches=False
            )
            out[missing[near_pt]] = self.codes[near_state]
        if hints is not None:
            for i in np.flatnonzero((hints != "") & (hints != out)):
                geom = self.by_code.get(hints[i])
                if geom is not None and shapely.distance(geom, points[i]) <= COAST_TOLERANCE_DEG:
                    out[i] = hints[i]
        return out


_locator: StateLocator | None = None


def locator() -> StateLocator:
    """The shared locator (outlines are decoded once per process)."""
    global _locator
    if _locator is None:
        _locator = StateLocator()
    return _locator


def place(raw: list[RawSite]) -> Placement:
    """Reproject every raw site, reject bad coordinates, keep the ones in the US."""
    rejects: list[Reject] = []
    by_crs: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(raw):
        by_crs[r.crs].append(i)
    lon = np.full(len(raw), np.nan)
    lat = np.full(len(raw), np.nan)
    ok = np.zeros(len(raw), dtype=bool)
    for crs, idx in by_crs.items():
        xs = np.array([raw[i].x for i in idx])
        ys = np.array([raw[i].y for i in idx])
        try:
            lo, la = to_lonlat(xs, ys, crs)
        except RecordError as exc:
            rejects.extend(Reject(f"{raw[i].source} {raw[i].record_id}", str(exc)) for i in idx)
            continue
        for j, i in enumerate(idx):
            try:
                check_lonlat(lo[j], la[j])
            except RecordError as exc:
                rejects.append(Reject(f"{raw[i].source} {raw[i].record_id}", str(exc)))
                continue
            lon[i], lat[i], ok[i] = lo[j], la[j], True
    keep = np.flatnonzero(ok)
    claims_us = np.array([raw[i].country_hint in (None, "US") for i in keep], dtype=bool)
    hints = np.array([raw[i].state_hint or "" for i in keep], dtype=object)
    states = locator().locate(lon[keep], lat[keep], claims_us, hints)
    sites = []
    for i, state in zip(keep.tolist(), states, strict=True):
        if not state:
            continue
        r = raw[i]
        sites.append(Site(
            source=r.source, record_id=r.record_id, lon=float(lon[i]), lat=float(lat[i]), state=str(state),
            name=r.name, species=r.species, commodities=r.commodities, deposit_types=r.deposit_types,
            rank=r.rank,
        ))
    return Placement(sites=sites, rejects=rejects, outside_us=len(keep) - len(sites))
