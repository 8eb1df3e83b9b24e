"""The parsed form of a site record, shared by every reader, and reprojection to lon/lat."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

POINT_WKT = re.compile(
    r"^\s*POINT\s*(?:Z\s*|M\s*|ZM\s*)?\(\s*([-+0-9.eE]+)\s+([-+0-9.eE]+)(?:\s+[-+0-9.eE]+)*\s*\)\s*$",
    re.IGNORECASE,
)


class RecordError(ValueError):
    """A record that cannot be ingested; the message is the reason shown to the user."""


@dataclass
class RawSite:
    """A site as read from a source, before reprojection and the US filter."""

    source: str
    record_id: str
    x: float
    y: float
    crs: str
    name: str | None = None
    species: list[str] = field(default_factory=list)
    commodities: list[str] = field(default_factory=list)
    deposit_types: list[str] = field(default_factory=list)
    rank: str | None = None
    country_hint: str | None = None  # ISO2 code the source claims, if any
    state_hint: str | None = None  # US postal code the source claims, if any


@dataclass
class Site:
    """A site ready for the store: lon/lat (EPSG:4326) and its US state."""

    source: str
    record_id: str
    lon: float
    lat: float
    state: str
    name: str | None
    species: list[str]
    commodities: list[str]
    deposit_types: list[str]
    rank: str | None


@dataclass
class Reject:
    """A record left out, and why."""

    record: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        """JSON form for ingest_runs.rejects."""
        return {"record": self.record, "reason": self.reason}


def parse_point(wkt: str) -> tuple[float, float]:
    """(x, y) of a WKT point; RecordError for anything else."""
    m = POINT_WKT.match(wkt)
    if not m:
        raise RecordError(f"location {wkt[:60]!r} is not a WKT POINT")
    x, y = float(m.group(1)), float(m.group(2))
    if not (math.isfinite(x) and math.isfinite(y)):
        raise RecordError(f"location {wkt[:60]!r} has a non-finite coordinate")
    return x, y


@lru_cache(maxsize=64)
def transformer_for(crs: str) -> Transformer:
    """A transformer from ``crs`` to lon/lat WGS 84; RecordError when the CRS is unknown."""
    try:
        source = CRS.from_user_input(crs)
    except CRSError as exc:
        raise RecordError(f"unknown CRS {crs!r}") from exc
    return Transformer.from_crs(source, CRS.from_epsg(4326), always_xy=True)


def to_lonlat(xs: np.ndarray, ys: np.ndarray, crs: str) -> tuple[np.ndarray, np.ndarray]:
    """Reproject coordinate arrays to lon/lat (identity for EPSG:4326)."""
    if crs.upper() in ("EPSG:4326", "OGC:CRS84"):
        return xs.astype(float), ys.astype(float)
    lon, lat = transformer_for(crs).transform(xs, ys)
    return np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)


def check_lonlat(lon: float, lat: float) -> None:
    """RecordError when a lon/lat pair is out of range."""
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise RecordError("coordinates are not finite after reprojection")
    if not -90.0 <= lat <= 90.0:
        raise RecordError(f"latitude {lat:g} is outside -90..90")
    if not -180.0 <= lon <= 180.0:
        raise RecordError(f"longitude {lon:g} is outside -180..180")
