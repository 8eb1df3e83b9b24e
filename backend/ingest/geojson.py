"""Reader for GeoJSON FeatureCollections of point sites (a user's own records)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from backend.ingest.minmod import SourceFile
from backend.ingest.records import RawSite, RecordError, Reject
from backend.ingest.vocabulary import vocabulary


def _names(value: Any) -> list[str]:
    """A list of names from a list or a comma-separated string."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v).strip() for v in value if str(v).strip()]


def parse_feature(feature: dict[str, Any], source: str, crs: str) -> RawSite:
    """One GeoJSON Feature -> RawSite."""
    props = feature.get("properties") or {}
    record_id = props.get("record_id", feature.get("id"))
    if record_id in (None, ""):
        raise RecordError("no record_id property and no feature id")
    geom = feature.get("geometry")
    if not geom:
        raise RecordError("no location")
    if geom.get("type") != "Point":
        raise RecordError(f"geometry type {geom.get('type')!r} is not Point")
    coords = geom.get("coordinates") or []
    if len(coords) < 2 or not all(isinstance(c, int | float) for c in coords[:2]):
        raise RecordError(f"coordinates {coords!r} are not [x, y] numbers")
    vocab = vocabulary()
    commodities = _names(props.get("commodities", props.get("commodity")))
    species = sorted({c for c in (vocab.canonical(n) for n in commodities) if c})
    return RawSite(
        source=str(props.get("source") or source), record_id=str(record_id), x=float(coords[0]),
        y=float(coords[1]), crs=crs, name=props.get("name"), species=species, commodities=commodities,
        deposit_types=_names(props.get("deposit_types", props.get("deposit_type"))),
        rank=props.get("rank"), country_hint=props.get("country"), state_hint=props.get("state"),
    )


def read_geojson(path: Path) -> SourceFile:
    """Parse a FeatureCollection; ``properties.source`` defaults to ``geojson:<file stem>``."""
    parsed = SourceFile(name=path.name)
    try:
        doc = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path.name} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise ValueError(f"{path.name} is not a GeoJSON FeatureCollection")
    crs = "EPSG:4326"
    named = ((doc.get("crs") or {}).get("properties") or {}).get("name")
    if named:
        crs = str(named)
    source = f"geojson:{path.stem}"
    for i, feature in enumerate(doc.get("features") or []):
        parsed.n_read += 1
        try:
            parsed.sites.append(parse_feature(feature, source, crs))
        except RecordError as exc:
            parsed.rejects.append(Reject(f"feature {i}", str(exc)))
        except (TypeError, ValueError, AttributeError) as exc:
            parsed.rejects.append(Reject(f"feature {i}", f"malformed feature: {exc}"))
    return parsed
