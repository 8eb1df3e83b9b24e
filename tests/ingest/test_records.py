import numpy as np
import pytest
from pyproj import Transformer

from backend.ingest.minmod import parse_site
from backend.ingest.placement import place
from backend.ingest.records import RecordError, parse_point, to_lonlat


def test_parse_point_variants():
    assert parse_point("POINT (-120.5 38.25)") == (-120.5, 38.25)
    assert parse_point("point(1e2 -3)") == (100.0, -3.0)
    assert parse_point("POINT Z (1 2 3)") == (1.0, 2.0)
    with pytest.raises(RecordError, match="not a WKT POINT"):
        parse_point("LINESTRING (0 0, 1 1)")
    with pytest.raises(RecordError):
        parse_point("POINT (-68.6 NaN)")


def test_oregon_lambert_feet_reprojects_into_oregon():
    # A real DOGAMI record (ID_21983) in EPSG:2994, international feet.
    lon, lat = to_lonlat(np.array([743652.2372047305]), np.array([670274.4803149551]), "EPSG:2994")
    expect = Transformer.from_crs("EPSG:2994", "EPSG:4326", always_xy=True).transform(743652.2372047305,
                                                                                    670274.4803149551)
    assert (lon[0], lat[0]) == pytest.approx(expect)
    assert -124.6 < lon[0] < -116.4 and 41.9 < lat[0] < 46.3


def test_utah_utm_reprojects_into_utah():
    site = parse_site({
        "source_id": "https://doi.org/10.34191/OFR-757", "record_id": "787",
        "location_info": {"location": "POINT (337936 4506676)", "crs": {"observed_name": "EPSG:26912"}},
        "mineral_inventory": [{"commodity": {"observed_name": "FE"}}],
    })
    placed = place([site])
    assert placed.sites[0].state == "UT"


def test_crs_by_qid_only():
    site = parse_site({
        "source_id": "s", "record_id": "1",
        "location_info": {"location": "POINT (337936 4506676)",
                          "crs": {"normalized_uri": "https://minmod.isi.edu/resource/Q704"}},
    })
    assert site.crs == "EPSG:26912"


def test_outside_us_is_skipped_not_rejected():
    toronto = parse_site({"source_id": "s", "record_id": "1", "location_info": {"location": "POINT (-79.38 43.65)"}})
    placed = place([toronto])
    assert placed.sites == [] and placed.rejects == [] and placed.outside_us == 1


def test_coastal_point_just_offshore_is_kept_unless_source_says_elsewhere():
    # Just off the 1:10m coastline of Oregon near the Columbia mouth.
    near = parse_site({"source_id": "s", "record_id": "1", "location_info": {"location": "POINT (-124.09 46.24)"}})
    placed = place([near])
    assert len(placed.sites) == 1
