"""US state and nation outlines decoded from the bundled us-atlas TopoJSON (Census, 1:10m)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from backend.settings import PROJECT_ROOT

BOUNDARIES_DIR = PROJECT_ROOT / "data" / "boundaries"
STATE_TABLE = PROJECT_ROOT / "data" / "raw" / "minmod" / "entities" / "state_or_province.csv"

#: The 48 conterminous states plus DC (postal codes): the CONUS of the M3 grid.
NOT_CONUS = frozenset({"AK", "HI", "PR", "VI", "GU", "AS", "MP"})


def _decode_arcs(topology: dict[str, Any]) -> list[np.ndarray]:
    """Decode quantised, delta-encoded TopoJSON arcs into lon/lat arrays."""
    scale = np.asarray(topology["transform"]["scale"], dtype=float)
    translate = np.asarray(topology["transform"]["translate"], dtype=float)
    arcs = []
    for arc in topology["arcs"]:
        q = np.cumsum(np.asarray(arc, dtype=float), axis=0)
        arcs.append(q * scale + translate)
    return arcs


def _ring(arcs: list[np.ndarray], indices: Sequence[int]) -> np.ndarray:
    """Stitch a ring from arc indices (negative index = reversed arc ~i)."""
    parts = []
    for i, idx in enumerate(indices):
        coords = arcs[idx] if idx >= 0 else arcs[~idx][::-1]
        parts.append(coords if i == 0 else coords[1:])
    return np.concatenate(parts)


def _geometry(arcs: list[np.ndarray], geom: dict[str, Any]) -> BaseGeometry:
    """Build a shapely (Multi)Polygon from a TopoJSON geometry object."""
    if geom["type"] == "Polygon":
        polys = [geom["arcs"]]
    elif geom["type"] == "MultiPolygon":
        polys = geom["arcs"]
    else:
        raise ValueError(f"unsupported TopoJSON geometry type {geom['type']!r}")
    shapes = [shapely.Polygon(_ring(arcs, p[0]), [_ring(arcs, h) for h in p[1:]]) for p in polys]
    return shapely.make_valid(shapely.MultiPolygon(shapes))


@dataclass(frozen=True)
class State:
    """One US state or territory outline."""

    code: str
    name: str
    fips: str
    geometry: BaseGeometry


def _postal_codes() -> dict[str, str]:
    """State name -> postal code, from MinMod's state_or_province table."""
    codes: dict[str, str] = {}
    with STATE_TABLE.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["country_code"] == "US" and row["state_code"]:
                codes[row["name"].lower()] = row["state_code"]
    return codes


@lru_cache
def load_states(path: Path | None = None) -> tuple[State, ...]:
    """All state and territory outlines of us-atlas states-10m.json."""
    topology = json.loads((path or BOUNDARIES_DIR / "states-10m.json").read_text())
    arcs = _decode_arcs(topology)
    codes = _postal_codes()
    codes.setdefault("district of columbia", "DC")
    codes.setdefault("commonwealth of the northern mariana islands", "MP")
    codes.setdefault("united states virgin islands", "VI")
    states = []
    for g in topology["objects"]["states"]["geometries"]:
        name = g["properties"]["name"]
        code = codes.get(name.lower())
        if code is None:
            raise ValueError(f"no postal code known for state {name!r}")
        states.append(State(code=code, name=name, fips=g["id"], geometry=_geometry(arcs, g)))
    return tuple(states)


@lru_cache
def conus_outline() -> BaseGeometry:
    """The union of the 48 conterminous states and DC."""
    return shapely.union_all([s.geometry for s in load_states() if s.code not in NOT_CONUS])


@lru_cache
def nation_outline() -> BaseGeometry:
    """The whole US (states and territories) as one geometry."""
    return shapely.union_all([s.geometry for s in load_states()])
