"""Reader for the USGS MRDS bulk CSV (``mrds.csv`` from mrdata.usgs.gov) in its real column layout.

Columns used: ``dep_id`` (record id), ``site_name``, ``latitude``, ``longitude`` (NAD27/WGS84
decimal degrees, taken as EPSG:4326), ``country``, ``state``, ``commod1``..``commod3`` (commodity
names, comma-separated, e.g. "Gold, Silver"; codes such as AU are accepted too), ``dep_type``,
``dev_stat`` (the rank: Producer, Past Producer, Prospect, Occurrence, ...). Other columns are ignored.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from backend.ingest.minmod import SourceFile, _us_states_by
from backend.ingest.records import RawSite, RecordError, Reject
from backend.ingest.vocabulary import vocabulary

MRDS_SOURCE = "https://mrdata.usgs.gov/mrds"
REQUIRED = ("dep_id", "latitude", "longitude", "commod1")


def _float(value: str, column: str) -> float:
    """A coordinate cell as a float, or the reason it is not one."""
    text = (value or "").strip()
    if not text:
        raise RecordError(f"no {column}")
    try:
        return float(text)
    except ValueError as exc:
        raise RecordError(f"{column} {text!r} is not a number") from exc


def parse_row(row: dict[str, str]) -> RawSite:
    """One MRDS row -> RawSite."""
    dep_id = (row.get("dep_id") or "").strip()
    if not dep_id:
        raise RecordError("no dep_id")
    lat = _float(row.get("latitude", ""), "latitude")
    lon = _float(row.get("longitude", ""), "longitude")
    vocab = vocabulary()
    commodities: list[str] = []
    species: list[str] = []
    for column in ("commod1", "commod2", "commod3"):
        for part in (row.get(column) or "").split(","):
            name = part.strip()
            if not name:
                continue
            if name not in commodities:
                commodities.append(name)
            cid = vocab.canonical(name) or vocab.from_mrds_code(name)
            if cid and cid not in species:
                species.append(cid)
    country = (row.get("country") or "").strip()
    state = (row.get("state") or "").strip()
    state_hint = _us_states_by("name").get(state.lower()) or (state.upper() if len(state) == 2 else None)
    dep_type = (row.get("dep_type") or "").strip()
    return RawSite(
        source=MRDS_SOURCE, record_id=dep_id, x=lon, y=lat, crs="EPSG:4326",
        name=(row.get("site_name") or "").strip() or None, species=sorted(species), commodities=commodities,
        deposit_types=[dep_type] if dep_type else [], rank=(row.get("dev_stat") or "").strip() or None,
        country_hint=None if not country or country.lower() in ("united states", "usa", "us") else country[:2].upper(),
        state_hint=state_hint,
    )


def read_mrds(path: Path) -> SourceFile:
    """Parse an mrds.csv file; a file without the MRDS columns is refused with the ones missing."""
    parsed = SourceFile(name=path.name)
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        text = fh.read()
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ValueError(
            f"{path.name} is not an MRDS CSV: missing column(s) {', '.join(missing)}; "
            f"expected the mrds.csv layout (dep_id, site_name, latitude, longitude, commod1, commod2, commod3, ...)"
        )
    for line, row in enumerate(reader, start=2):
        parsed.n_read += 1
        try:
            parsed.sites.append(parse_row(row))
        except RecordError as exc:
            parsed.rejects.append(Reject(f"line {line} dep_id {row.get('dep_id') or '?'}", str(exc)))
    return parsed
