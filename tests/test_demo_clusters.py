"""The demo model's flagged clusters over the real records: new ground, at least 2 km from the species' sites."""

import sqlalchemy as sa


def test_demo_clusters_keep_away_from_known_sites_of_their_species(full_engine, demo_layers):
    with full_engine.connect() as c:
        rows = c.execute(sa.text("""
            SELECT c.species, c.nearest_distance_m,
                   (SELECT min(ST_Distance(ST_Transform(s.geom, 5070), ST_Transform(c.geom, 5070)))
                    FROM sites s WHERE c.species = ANY(s.species)
                      AND ST_DWithin(s.geom, c.geom, 0.1)) AS brute_m
            FROM clusters c JOIN layer_versions v ON v.id = c.layer_version AND v.is_current""")).all()
    assert len({r.species for r in rows}) >= 5, "the demo layers flag clusters for few species"
    for r in rows:
        assert r.nearest_distance_m is not None and r.nearest_distance_m >= 2000, r
        # the stored nearest distance is the true one (no site of the species within 0.1 degree is closer)
        assert r.brute_m is None or r.brute_m >= r.nearest_distance_m - 1, r
