"""Parsing and validation of the query parameters the API shares (bbox, species, limit, cursor)."""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass

from backend.api.errors import BadQuery

BBOX_HELP = "bbox is minx,miny,maxx,maxy in degrees (EPSG:4326), -180<=x<=180, -90<=y<=90, min < max"


@dataclass(frozen=True)
class BBox:
    """A lon/lat box."""

    minx: float
    miny: float
    maxx: float
    maxy: float


def parse_bbox(text: str | None) -> BBox | None:
    """A BBox from 'minx,miny,maxx,maxy', or BadQuery saying what is wrong."""
    if text is None or text.strip() == "":
        return None
    parts = text.split(",")
    if len(parts) != 4:
        raise BadQuery("bbox", f"bbox {text!r} has {len(parts)} value(s), expected 4; {BBOX_HELP}")
    try:
        minx, miny, maxx, maxy = (float(p) for p in parts)
    except ValueError:
        raise BadQuery("bbox", f"bbox {text!r} is not four numbers; {BBOX_HELP}") from None
    if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)):
        raise BadQuery("bbox", f"bbox {text!r} has a non-finite value; {BBOX_HELP}")
    for name, v, lo, hi in (("minx", minx, -180, 180), ("maxx", maxx, -180, 180),
                            ("miny", miny, -90, 90), ("maxy", maxy, -90, 90)):
        if not lo <= v <= hi:
            raise BadQuery("bbox", f"bbox {name} {v:g} is outside {lo}..{hi}; {BBOX_HELP}")
    if minx >= maxx or miny >= maxy:
        raise BadQuery("bbox", f"bbox {text!r} is inverted or empty (min must be below max); {BBOX_HELP}")
    return BBox(minx, miny, maxx, maxy)


def bbox_condition(box: BBox, params: dict) -> str:
    """SQL condition (``AND geom && envelope``) for a box; its bounds are added to ``params``."""
    params.update(minx=box.minx, miny=box.miny, maxx=box.maxx, maxy=box.maxy)
    return "AND geom && ST_MakeEnvelope(%(minx)s, %(miny)s, %(maxx)s, %(maxy)s, 4326)"


def parse_species(text: str | None, known: list[str], parameter: str = "species") -> list[str]:
    """Species ids from a comma-separated list; BadQuery naming the unknown ones and the known ones."""
    if text is None or text.strip() == "":
        return []
    wanted = [s.strip().lower() for s in text.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in known]
    if unknown:
        names = ", ".join(repr(u) for u in unknown)
        raise BadQuery(parameter, f"{parameter}: species {names} unknown; known: {', '.join(known)}")
    return wanted


def parse_limit(value: int | None, default: int, maximum: int) -> int:
    """The page size, or BadQuery stating the allowed range."""
    if value is None:
        return default
    if value < 1 or value > maximum:
        raise BadQuery("limit", f"limit {value} is outside 1..{maximum}; page through more with cursor")
    return value


def encode_cursor(last_id: int) -> str:
    """An opaque cursor for the page after the row with this id."""
    return base64.urlsafe_b64encode(f"s1:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    """The id a cursor points after (0 for the first page), or BadQuery."""
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = text.partition(":")
        if prefix != "s1":
            raise ValueError(prefix)
        after = int(value)
        if not 0 <= after < 2**63:
            raise ValueError(value)
        return after
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadQuery("cursor", "cursor is not valid; pass the next_cursor of a previous page unchanged") from None
