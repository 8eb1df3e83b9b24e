"""Reader for MinMod / CDR mineral-site JSON (batches of sites, loose or in .tar.xz archives)."""

from __future__ import annotations

import csv
import json
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

from backend.ingest.records import RawSite, RecordError, Reject, parse_point
from backend.ingest.vocabulary import QID_PREFIX, vocabulary
from backend.settings import PROJECT_ROOT

ENTITIES = PROJECT_ROOT / "data" / "raw" / "minmod" / "entities"
DEFAULT_CRS = "EPSG:4326"  # MinMod's default when a location carries no CRS
MAX_CODE_LENGTH = 3  # observed names this short are symbols or codes (Au, FE, SC)


@dataclass
class SourceFile:
    """One input file (a batch, or a whole archive) parsed into raw sites and rejects."""

    name: str
    sites: list[RawSite] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    n_read: int = 0


@lru_cache
def _entity_map(table: str, key: str, value: str) -> dict[str, str]:
    """A two-column lookup from one of MinMod's entity tables."""
    with (ENTITIES / table).open(newline="", encoding="utf-8") as fh:
        return {row[key]: row[value] for row in csv.DictReader(fh) if row.get(value)}


def _qid(uri: str | None) -> str | None:
    """Q-id of a MinMod resource URI."""
    if uri and uri.startswith(QID_PREFIX):
        return uri[len(QID_PREFIX):]
    return None


def _crs_of(location_info: dict[str, Any]) -> str:
    """The CRS of a location: its observed name, else its Q-id, else MinMod's default."""
    crs = location_info.get("crs")
    if not crs:
        return DEFAULT_CRS
    if isinstance(crs, str):
        return crs
    observed = (crs.get("observed_name") or "").strip()
    if observed:
        return observed
    qid = _qid(crs.get("normalized_uri"))
    if qid:
        known = _entity_map("crs.csv", "minmod_id", "name")
        if qid not in known:
            raise RecordError(f"unknown CRS {qid!r} (MinMod knows {', '.join(sorted(known))})")
        return known[qid]
    return DEFAULT_CRS


def _country_of(location_info: dict[str, Any]) -> str | None:
    """ISO2 code of the first country the record names, if any."""
    iso_by_qid = _entity_map("country.csv", "minmod_id", "iso2")
    iso_by_name = {k.lower(): v for k, v in _entity_map("country.csv", "name", "iso2").items()}
    for c in location_info.get("country") or []:
        qid = _qid(c.get("normalized_uri"))
        if qid and qid in iso_by_qid:
            return iso_by_qid[qid]
        name = (c.get("observed_name") or "").strip().lower()
        if name in ("united states", "usa", "us", "united states of america"):
            return "US"
        if name in iso_by_name:
            return iso_by_name[name]
    return None


def _state_of(location_info: dict[str, Any]) -> str | None:
    """US postal code of the state the record names, if it names one."""
    by_qid = _us_states_by("minmod_id")
    by_name = _us_states_by("name")
    for st in location_info.get("state_or_province") or []:
        qid = _qid(st.get("normalized_uri"))
        if qid and qid in by_qid:
            return by_qid[qid]
        name = (st.get("observed_name") or "").strip()
        if name.upper() in by_name.values():
            return name.upper()
        if name.lower() in by_name:
            return by_name[name.lower()]
    return None


@lru_cache
def _us_states_by(column: str) -> dict[str, str]:
    """US state postal codes keyed by a column of MinMod's state table (names lower-cased)."""
    with (ENTITIES / "state_or_province.csv").open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["country_code"] == "US" and r["state_code"]]
    if column == "name":
        return {r["name"].lower(): r["state_code"] for r in rows}
    return {r[column]: r["state_code"] for r in rows}


def _deposit_types(site: dict[str, Any]) -> list[str]:
    """Deposit type names (MinMod's label when the Q-id is known)."""
    labels = _entity_map("deposit_type.csv", "minmod_id", "deposit_type")
    out: list[str] = []
    for d in site.get("deposit_type_candidate") or []:
        label = labels.get(_qid(d.get("normalized_uri")) or "") or (d.get("observed_name") or "").strip()
        if label and label not in out:
            out.append(label)
    return out


def _rank(site: dict[str, Any]) -> str | None:
    """Site rank, else site type, as the source gave it."""
    for key in ("site_rank", "site_type"):
        value = site.get(key)
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, dict):
            value = value.get("observed_name")
        if value:
            return str(value)
    return None


def parse_site(site: dict[str, Any]) -> RawSite:
    """One MinMod site dict -> RawSite; RecordError with the reason when it cannot be used."""
    source = site.get("source_id")
    record_id = site.get("record_id")
    if not source or record_id in (None, ""):
        raise RecordError("no source_id or record_id")
    info = site.get("location_info") or {}
    wkt = info.get("location")
    if not wkt:
        raise RecordError("no location")
    x, y = parse_point(str(wkt))
    vocab = vocabulary()
    from_words: list[str] = []
    from_codes: list[str] = []
    commodities: list[str] = []
    for item in site.get("mineral_inventory") or []:
        commodity = item.get("commodity") or {}
        observed = (commodity.get("observed_name") or "").strip()
        uri = commodity.get("normalized_uri")
        cid = vocab.canonical(observed, uri)
        raw_name = observed or (vocab.labels.get(cid, "") if cid else "")
        if raw_name and raw_name not in commodities:
            commodities.append(raw_name)
        if cid:
            (from_codes if 0 < len(observed) <= MAX_CODE_LENGTH else from_words).append(cid)
    # Short codes count only when the record names no commodity in words: Oregon's DOGAMI
    # writes "stone, crushed, SC" and "sand and gravel, S, G", which MinMod's matcher reads as
    # scandium and sulfur; element symbols alone (Utah's "FE", "Ni") still count.
    species = sorted(set(from_words or from_codes))
    name = site.get("name")
    return RawSite(
        source=str(source), record_id=str(record_id), x=x, y=y, crs=_crs_of(info),
        name=str(name).strip() if name else None, species=species, commodities=commodities,
        deposit_types=_deposit_types(site), rank=_rank(site), country_hint=_country_of(info),
        state_hint=_state_of(info),
    )


def _label(site: Any) -> str:
    """How a record is named in reject reports."""
    if isinstance(site, dict):
        return f"{site.get('source_id', '?')} {site.get('record_id', '?')}"
    return repr(site)[:60]


def iter_batch(text: bytes, batch: str) -> Iterator[tuple[Any, str | None]]:
    """Yield (site, None) per element of a JSON array, and (None, reason) if it is cut short.

    Whole batches parse at full speed; a damaged one is read element by element so every
    complete record before the damage is kept.
    """
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, list):
        for item in data:
            yield item, None
        return
    if data is not None:
        yield None, f"{batch}: expected a JSON array of sites, got {type(data).__name__}"
        return
    decoder = json.JSONDecoder()
    s = text.decode("utf-8", errors="replace")
    pos = len(s) - len(s.lstrip())
    if not s.startswith("[", pos):
        yield None, f"{batch}: not a JSON array"
        return
    pos += 1
    count = 0
    while True:
        while pos < len(s) and s[pos] in " \t\r\n,":
            pos += 1
        if pos < len(s) and s[pos] == "]":
            return
        try:
            item, pos = decoder.raw_decode(s, pos)
        except json.JSONDecodeError as exc:
            yield None, f"{batch}: truncated or malformed JSON at character {exc.pos} after {count} complete records"
            return
        count += 1
        yield item, None


def parse_batch(text: bytes, batch: str, into: SourceFile) -> None:
    """Parse one batch's bytes into a SourceFile."""
    for item, problem in iter_batch(text, batch):
        if problem:
            into.rejects.append(Reject(batch, problem))
            continue
        into.n_read += 1
        if not isinstance(item, dict):
            into.rejects.append(Reject(_label(item), "record is not a JSON object"))
            continue
        try:
            into.sites.append(parse_site(item))
        except RecordError as exc:
            into.rejects.append(Reject(_label(item), str(exc)))


def _is_input(path: Path) -> bool:
    """True for the file kinds this reader takes."""
    return path.name.endswith((".tar.xz", ".tar.gz", ".tar")) or path.suffix == ".json"


def expand_paths(paths: Iterable[Path]) -> list[Path]:
    """Input files in the order given, folders expanded (sorted), each file once."""
    out: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        children = sorted(c for c in path.rglob("*") if c.is_file() and _is_input(c)) if path.is_dir() else [path]
        for child in children:
            key = child.resolve()
            if key not in seen:
                seen.add(key)
                out.append(child)
    return out


def read_path(path: Path) -> Iterator[SourceFile]:
    """Parsed input files under a path: a .tar.xz archive, a .json batch, or a folder of them."""
    if path.is_dir():
        for child in expand_paths([path]):
            yield from read_path(child)
        return
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.suffix == ".json":
        parsed = SourceFile(name=path.name)
        parse_batch(path.read_bytes(), path.name, parsed)
        yield parsed
        return
    if ".tar" in "".join(path.suffixes):
        parsed = SourceFile(name=path.name)
        with tarfile.open(path) as tar:
            for member in sorted(tar.getmembers(), key=lambda m: m.name):
                if member.isfile() and member.name.endswith(".json"):
                    fh = tar.extractfile(member)
                    if fh is not None:
                        parse_batch(fh.read(), member.name, parsed)
        yield parsed
        return
    raise ValueError(f"{path.name}: expected a .json batch, a .tar.xz archive or a folder")
