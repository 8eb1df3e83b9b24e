"""The identify popup's nearest known site is the true nearest in metres (EPSG:5070), checked on the real records."""

import numpy as np
import pytest
import sqlalchemy as sa

from backend.api.routers.identify import nearest_site

BRUTE = sa.text("""
SELECT min(ST_Distance(ST_Transform(geom, 5070), ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), 5070)))
FROM sites WHERE :species = ANY(species)
""")


@pytest.mark.parametrize("species", ["gold", "tungsten", "uranium"])
def test_nearest_site_matches_a_scan_of_every_site(full_engine, species):
    rng = np.random.default_rng(7)
    points = np.column_stack([rng.uniform(-124, -67, 12), rng.uniform(25, 49, 12)])
    with full_engine.connect() as conn:
        for lon, lat in points:
            site, distance = nearest_site(conn, species, float(lon), float(lat))
            brute = conn.execute(BRUTE, {"lon": float(lon), "lat": float(lat), "species": species}).scalar()
            assert site is not None and distance == pytest.approx(brute, abs=1), (lon, lat)
