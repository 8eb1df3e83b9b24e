import pytest

from backend.ingest.minmod import parse_site
from backend.ingest.vocabulary import slug, vocabulary


@pytest.mark.parametrize(
    ("observed", "uri", "expected"),
    [
        ("Gold", None, "gold"),
        ("gold", None, "gold"),
        ("GOLD", None, "gold"),
        ("Au", None, "gold"),
        ("AU", None, "gold"),
        (None, "https://minmod.isi.edu/resource/Q551", "gold"),
        ("FE", None, "iron"),
        ("Zn", None, "zinc"),
        ("Sand and Gravel", None, "sand_and_gravel"),
        ("SDG", None, "sand_and_gravel"),
        ("Clay > Kaolin", None, "clay"),
        ("kaolin", None, "clay"),
        ("Stone", None, "stone"),
        ("STN_C", None, "stone"),
        ("galena", None, "lead"),
        ("sphalerite", None, "zinc"),
        ("Limestone", None, "limestone"),
        ("unobtainium", None, None),
    ],
)
def test_canonical(observed, uri, expected):
    assert vocabulary().canonical(observed, uri) == expected


def test_mrds_codes_and_grades():
    v = vocabulary()
    assert v.from_mrds_code("AU") == "gold"
    assert v.from_mrds_code("CLY_K") == "clay"
    assert v.from_mrds_code("SDG") == "sand_and_gravel"


def test_every_m3_species_is_known():
    from backend.settings import M3_SPECIES

    assert set(M3_SPECIES) <= set(vocabulary().species)


def test_slug():
    assert slug("Platinum-Group Elements") == "platinum_group_elements"


def _site(*names_and_uris):
    return {
        "source_id": "s", "record_id": "1",
        "location_info": {"location": "POINT (-120 40)"},
        "mineral_inventory": [
            {"commodity": {"observed_name": n, **({"normalized_uri": u} if u else {})}} for n, u in names_and_uris
        ],
    }


def test_codes_beside_words_do_not_count():
    # Oregon DOGAMI: "stone, crushed, SC" -- MinMod maps SC to scandium (Q607).
    site = parse_site(_site(("stone", "https://minmod.isi.edu/resource/Q663"), ("crushed", None),
                            ("SC", "https://minmod.isi.edu/resource/Q607")))
    assert site.species == ["stone"]


def test_codes_alone_count():
    site = parse_site(_site(("FE", "https://minmod.isi.edu/resource/Q561")))
    assert site.species == ["iron"]
