import io
import json
import tarfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from backend.ingest import store
from backend.ingest.service import ingest_geojson, ingest_minmod, ingest_mrds

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def _site(record_id, location, crs=None, commodity="Gold"):
    info = {"location": location} if location is not None else {}
    if crs:
        info["crs"] = {"observed_name": crs}
    return {
        "source_id": "https://example.org/test-source", "record_id": record_id, "name": f"site {record_id}",
        "location_info": info,
        "mineral_inventory": [{"commodity": {"observed_name": commodity}}],
    }


GOOD = [
    _site("g1", "POINT (-120.9 38.9)"),
    _site("g2", "POINT (-112.0 40.5)", commodity="Zn"),
    _site("g3", "POINT (337936 4506676)", crs="EPSG:26912", commodity="FE"),
]
BAD = [
    _site("b-noloc", None),
    _site("b-lat95", "POINT (-112 95)"),
    _site("b-crs", "POINT (1 2)", crs="EPSG:999999"),
]


def _archive(tmp_path, batches: dict[str, bytes]):
    path = tmp_path / "test_source.tar.xz"
    with tarfile.open(path, "w:xz") as tar:
        for name, data in batches.items():
            info = tarfile.TarInfo(f"test_source/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _counts(engine):
    with engine.connect() as c:
        return c.exec_driver_sql("SELECT count(*) FROM sites").scalar_one()


def test_bad_records_are_reported_and_good_ones_kept(tmp_path, scratch_engine):
    extra_good = [_site("t1", "POINT (-121 39)"), _site("t2", "POINT (-121.1 39.1)")]
    truncated = json.dumps(extra_good + [_site("t3", "POINT (-121.2 39.2)")]).encode()
    truncated = truncated[: truncated.rindex(b'"t3"') + 10]  # cut mid-record
    path = _archive(tmp_path, {
        "b000.json": json.dumps(GOOD + BAD).encode(),
        "b001.json": truncated,
    })
    (report,) = list(ingest_minmod(scratch_engine, [path]))
    assert report.status == "ok"
    assert report.inserted == 5  # g1, g2, g3 and the two complete records of the cut batch
    reasons = {r.record.split(" ")[-1] if "example.org" in r.record else r.record: r.reason for r in report.rejects}
    assert reasons["b-noloc"] == "no location"
    assert "latitude 95" in reasons["b-lat95"]
    assert "unknown CRS" in reasons["b-crs"] and "EPSG:999999" in reasons["b-crs"]
    cut = [r for r in report.rejects if "truncated" in r.reason]
    assert len(cut) == 1 and "b001.json" in cut[0].reason and "after 2 complete records" in cut[0].reason
    with scratch_engine.connect() as c:
        run = c.exec_driver_sql("SELECT status, n_inserted, n_rejected, rejects FROM ingest_runs").one()
        ids = sorted(c.exec_driver_sql("SELECT record_id FROM sites").scalars())
    assert run[0] == "ok" and run[1] == 5 and run[2] == 4 and len(run[3]) == 4
    assert ids == ["g1", "g2", "g3", "t1", "t2"]


def test_reingest_changes_nothing(tmp_path, scratch_engine):
    path = _archive(tmp_path, {"b000.json": json.dumps(GOOD).encode()})
    first = list(ingest_minmod(scratch_engine, [path]))[0]
    second = list(ingest_minmod(scratch_engine, [path]))[0]
    assert (first.inserted, second.inserted, second.updated, second.unchanged) == (3, 0, 0, 3)
    assert _counts(scratch_engine) == 3


def test_changed_record_is_updated(tmp_path, scratch_engine):
    path = _archive(tmp_path, {"b000.json": json.dumps(GOOD).encode()})
    list(ingest_minmod(scratch_engine, [path]))
    changed = [dict(GOOD[0], name="renamed"), *GOOD[1:]]
    path2 = _archive(tmp_path, {"b000.json": json.dumps(changed).encode()})
    report = list(ingest_minmod(scratch_engine, [path2]))[0]
    assert (report.inserted, report.updated, report.unchanged) == (0, 1, 2)
    with scratch_engine.connect() as c:
        assert c.exec_driver_sql("SELECT name FROM sites WHERE record_id='g1'").scalar_one() == "renamed"


def test_failure_mid_file_leaves_database_as_before(tmp_path, scratch_engine, monkeypatch):
    first = _archive(tmp_path, {"b000.json": json.dumps(GOOD[:1]).encode()})
    list(ingest_minmod(scratch_engine, [first]))
    with scratch_engine.connect() as c:
        before = c.exec_driver_sql("SELECT id, record_id, name FROM sites ORDER BY id").all()

    real_copy = store._copy_sites

    def copy_then_fail(conn, sites):
        real_copy(conn, sites)  # rows are in the transaction ...
        conn.exec_driver_sql(
            "INSERT INTO sites (source, record_id, geom) VALUES ('x', 'half-written', "
            "ST_SetSRID(ST_MakePoint(-120, 40), 4326))"
        )
        raise OSError("disk vanished half-way")  # ... when the file fails

    monkeypatch.setattr(store, "_copy_sites", copy_then_fail)
    second = _archive(tmp_path, {"b000.json": json.dumps(GOOD).encode()})
    with pytest.raises(OSError, match="disk vanished"):
        list(ingest_minmod(scratch_engine, [second]))
    with scratch_engine.connect() as c:
        after = c.exec_driver_sql("SELECT id, record_id, name FROM sites ORDER BY id").all()
        runs = c.exec_driver_sql("SELECT status, error FROM ingest_runs ORDER BY id").all()
    assert after == before
    assert runs[-1][0] == "failed" and "disk vanished" in runs[-1][1]


def test_mrds_csv_real_layout(scratch_engine):
    report = ingest_mrds(scratch_engine, FIXTURES / "mrds_sample.csv")
    assert report.n_read == 6
    assert report.inserted == 3 and report.outside_us == 1
    reasons = {r.record: r.reason for r in report.rejects}
    assert reasons == {
        "line 5 dep_id 10004": "no latitude",
        "https://mrdata.usgs.gov/mrds 10005": "latitude 95 is outside -90..90",
    }
    with scratch_engine.connect() as c:
        rows = {r[0]: r[1:] for r in c.execute(sa.text(
            "SELECT record_id, species, rank, state, commodities FROM sites ORDER BY record_id"))}
    assert rows["10001"][0] == ["copper", "gold", "silver"]
    assert rows["10001"][1] == "Past Producer" and rows["10001"][2] == "CA"
    assert rows["10002"][0] == ["sand_and_gravel"]
    assert rows["10006"][0] == ["gold", "lead"]


def test_mrds_refuses_other_csv(tmp_path, scratch_engine):
    path = tmp_path / "other.csv"
    path.write_text("id,lat,lon\n1,2,3\n")
    with pytest.raises(ValueError, match="missing column"):
        ingest_mrds(scratch_engine, path)
    assert _counts(scratch_engine) == 0


def test_geojson(tmp_path, scratch_engine):
    doc = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "id": "a", "geometry": {"type": "Point", "coordinates": [-116.5, 43.6]},
             "properties": {"name": "My claim", "commodities": "gold, silver"}},
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-116.5, 43.6]}, "properties": {}},
            {"type": "Feature", "id": "c", "geometry": None, "properties": {}},
        ],
    }
    path = tmp_path / "claims.geojson"
    path.write_text(json.dumps(doc))
    report = ingest_geojson(scratch_engine, path)
    assert report.inserted == 1 and len(report.rejects) == 2
    with scratch_engine.connect() as c:
        src, species, state = c.exec_driver_sql("SELECT source, species, state FROM sites").one()
    assert src == "geojson:claims" and species == ["gold", "silver"] and state == "ID"
