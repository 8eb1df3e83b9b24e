"""Acceptance checks on the real bundled records."""

import shapely

from backend.geo.boundaries import load_states, nation_outline
from backend.ingest.placement import COAST_TOLERANCE_DEG
from backend.ingest.service import ingest_minmod
from backend.settings import PROJECT_ROOT

BUNDLED = PROJECT_ROOT / "data" / "raw" / "minmod"

OREGON_DOGAMI = "http://www.oregongeology.org"
UTAH_UMOS = "https://doi.org/10.34191/OFR-757"


def _points(engine, where, params=None):
    with engine.connect() as c:
        rows = c.exec_driver_sql(f"SELECT ST_X(geom), ST_Y(geom), state FROM sites WHERE {where}", params or {}).all()
    return rows


def test_at_least_100k_sites(full_engine):
    with full_engine.connect() as c:
        n = c.exec_driver_sql("SELECT count(*) FROM sites").scalar_one()
        countries = c.exec_driver_sql("SELECT DISTINCT country FROM sites").scalars().all()
    assert n >= 100_000
    assert countries == ["US"]


def test_no_site_outside_the_us(full_engine):
    rows = _points(full_engine, "true")
    points = shapely.points([(x, y) for x, y, _ in rows])
    us = shapely.buffer(nation_outline(), COAST_TOLERANCE_DEG + 1e-9)
    shapely.prepare(us)
    outside = int((~shapely.intersects(us, points)).sum())
    assert outside == 0


def test_oregon_and_utah_sites_lie_in_their_state(full_engine):
    states = {s.code: s.geometry for s in load_states()}
    for code in ("OR", "UT"):
        rows = _points(full_engine, "state = %(s)s", {"s": code})
        assert len(rows) > 5_000
        points = shapely.points([(x, y) for x, y, _ in rows])
        inside = shapely.intersects(shapely.buffer(states[code], COAST_TOLERANCE_DEG + 1e-9), points)
        assert inside.all(), f"{(~inside).sum()} {code} sites outside {code}"


def test_state_survey_records_reproject_into_their_state(full_engine):
    # Oregon's records come in EPSG:2994 (feet), Utah's in EPSG:26912: a wrong reprojection would
    # put them hundreds of kilometres away. Border mines may sit a few km across the generalised line.
    states = {s.code: s.geometry for s in load_states()}
    for source, code in ((OREGON_DOGAMI, "OR"), (UTAH_UMOS, "UT")):
        rows = _points(full_engine, "source = %(s)s", {"s": source})
        points = shapely.points([(x, y) for x, y, _ in rows])
        strictly = shapely.intersects(states[code], points).mean()
        near = shapely.intersects(shapely.buffer(states[code], 0.06), points).all()
        assert strictly > 0.995 and near


def test_reingesting_bundled_data_changes_no_row_count(full_db_url, full_engine):
    with full_engine.connect() as c:
        before = c.exec_driver_sql("SELECT count(*), max(id) FROM sites").one()
    reports = list(ingest_minmod(full_engine, [BUNDLED]))
    with full_engine.connect() as c:
        after = c.exec_driver_sql("SELECT count(*), max(id) FROM sites").one()
    assert after == before
    assert sum(r.inserted for r in reports) == 0 and sum(r.updated for r in reports) == 0
