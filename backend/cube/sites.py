"""The site records the cube is built from: a plain column table, read from PostGIS at the edge."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sqlalchemy import Engine

#: The one query the cube runs against the site store (ordered, so checksums are stable).
SITES_QUERY = (
    "SELECT ST_X(geom) AS lon, ST_Y(geom) AS lat, species, source, state FROM sites WHERE geom IS NOT NULL ORDER BY id"
)


@dataclass(frozen=True)
class SiteTable:
    """Sites as columns: WGS84 lon/lat, canonical species ids per site, source URI and state code."""

    lon: np.ndarray
    lat: np.ndarray
    species: tuple[tuple[str, ...], ...]
    source: tuple[str, ...]
    state: tuple[str | None, ...]

    def __post_init__(self) -> None:
        """Check that all columns have the same length."""
        n = len(self.lon)
        lengths = {len(self.lat), len(self.species), len(self.source), len(self.state)}
        if lengths != {n}:
            raise ValueError(f"site columns differ in length: lon has {n}, others {sorted(lengths)}")

    def __len__(self) -> int:
        return len(self.lon)

    @classmethod
    def from_records(
        cls,
        lon: Sequence[float],
        lat: Sequence[float],
        species: Sequence[Sequence[str]],
        source: Sequence[str] | None = None,
        state: Sequence[str | None] | None = None,
    ) -> SiteTable:
        """Build a table from plain sequences (missing source/state become empty/None)."""
        n = len(lon)
        return cls(
            lon=np.asarray(lon, dtype=np.float64),
            lat=np.asarray(lat, dtype=np.float64),
            species=tuple(tuple(s or ()) for s in species),
            source=tuple(source) if source is not None else ("",) * n,
            state=tuple(state) if state is not None else (None,) * n,
        )

    def species_counts(self) -> dict[str, int]:
        """Number of sites that name each species, sorted by species id."""
        counts: dict[str, int] = {}
        for names in self.species:
            for name in set(names):
                counts[name] = counts.get(name, 0) + 1
        return dict(sorted(counts.items()))

    def source_counts(self) -> dict[str, int]:
        """Number of sites per source URI, sorted by source."""
        values, counts = np.unique(np.asarray(self.source, dtype=object).astype(str), return_counts=True)
        return {str(v): int(c) for v, c in zip(values, counts, strict=True)}

    def checksum(self) -> str:
        """A sha256 over every column, in table order: the cube's record of which sites it saw."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.lon, dtype="<f8").tobytes())
        h.update(np.ascontiguousarray(self.lat, dtype="<f8").tobytes())
        for names, src, st in zip(self.species, self.source, self.state, strict=True):
            h.update(("|".join(names) + "\t" + src + "\t" + (st or "") + "\n").encode())
        return h.hexdigest()


def read_sites(engine: Engine) -> SiteTable:
    """Read every located site from the PostGIS ``sites`` table."""
    from sqlalchemy import text

    with engine.connect() as conn:
        rows = conn.execute(text(SITES_QUERY)).all()
    return SiteTable.from_records(
        lon=[r[0] for r in rows],
        lat=[r[1] for r in rows],
        species=[tuple(r[2] or ()) for r in rows],
        source=[r[3] or "" for r in rows],
        state=[r[4] for r in rows],
    )
