"""Commodity normalisation: every spelling, symbol, MinMod Q-id and MRDS code to one canonical id.

The vocabulary is MinMod's ``entities/commodity.csv`` (bundled under data/raw/minmod/entities).
A canonical id is the lower-case slug of the commodity's top-level name: "Gold" -> ``gold``,
"Clay > Kaolin" -> ``clay``, "Sand and Gravel" -> ``sand_and_gravel``. Ore minerals that the
vocabulary lacks (galena, sphalerite, chromite, ...) map to the commodity they are mined for
through a short table kept here (standard mineralogy, written by this team).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from backend.settings import PROJECT_ROOT

COMMODITY_CSV = PROJECT_ROOT / "data" / "raw" / "minmod" / "entities" / "commodity.csv"
QID_PREFIX = "https://minmod.isi.edu/resource/"

#: Ore and gangue minerals named by sources instead of the commodity (mineral -> commodity name).
ORE_MINERALS: dict[str, str] = {
    "argentite": "Silver", "acanthite": "Silver",
    "arsenopyrite": "Arsenic", "realgar": "Arsenic", "orpiment": "Arsenic",
    "azurite": "Copper", "bornite": "Copper", "chalcocite": "Copper", "chalcopyrite": "Copper",
    "chrysocolla": "Copper", "cuprite": "Copper", "malachite": "Copper", "tetrahedrite": "Copper",
    "enargite": "Copper", "tennantite": "Copper", "covellite": "Copper",
    "bauxite": "Aluminum", "gibbsite": "Aluminum", "boehmite": "Aluminum",
    "beryl": "Beryllium", "bertrandite": "Beryllium",
    "cassiterite": "Tin",
    "chromite": "Chromium", "chromic oxide": "Chromium",
    "cinnabar": "Mercury",
    "columbite": "Niobium", "pyrochlore": "Niobium", "tantalite": "Tantalum",
    "galena": "Lead", "cerussite": "Lead", "anglesite": "Lead",
    "hematite": "Iron", "magnetite": "Iron", "limonite": "Iron", "goethite": "Iron", "siderite": "Iron",
    "taconite": "Iron",
    "ilmenite": "Titanium", "rutile": "Titanium", "leucoxene": "Titanium",
    "molybdenite": "Molybdenum",
    "monazite": "Rare Earth Elements", "bastnaesite": "Rare Earth Elements", "xenotime": "Rare Earth Elements",
    "pentlandite": "Nickel", "garnierite": "Nickel", "millerite": "Nickel",
    "pyrolusite": "Manganese", "psilomelane": "Manganese", "rhodochrosite": "Manganese",
    "rhodonite": "Manganese", "wad": "Manganese",
    "scheelite": "Tungsten", "wolframite": "Tungsten", "huebnerite": "Tungsten", "ferberite": "Tungsten",
    "sphalerite": "Zinc", "smithsonite": "Zinc", "hemimorphite": "Zinc", "zincite": "Zinc",
    "willemite": "Zinc", "franklinite": "Zinc",
    "stibnite": "Antimony",
    "uraninite": "Uranium", "pitchblende": "Uranium", "carnotite": "Uranium", "coffinite": "Uranium",
    "autunite": "Uranium", "torbernite": "Uranium", "tyuyamunite": "Uranium",
    "vanadinite": "Vanadium", "roscoelite": "Vanadium",
    "zircon": "Zirconium",
    "spodumene": "Lithium", "lepidolite": "Lithium", "petalite": "Lithium", "amblygonite": "Lithium",
    "fluorite": "Fluorine-Fluorite", "fluorspar": "Fluorine-Fluorite",
    "barite": "Barium-Barite",
    "celestite": "Strontium",
    "apatite": "Phosphorus-Phosphates", "phosphate": "Phosphorus-Phosphates", "phosphorite": "Phosphorus-Phosphates",
    "gypsum": "Gypsum-Anhydrite", "anhydrite": "Gypsum-Anhydrite",
    "talc": "Talc-Soapstone", "soapstone": "Talc-Soapstone",
    "borax": "Boron-Borates", "colemanite": "Boron-Borates", "ulexite": "Boron-Borates",
    "halite": "Sodium", "trona": "Sodium", "salt": "Sodium",
    "sylvite": "Potash", "sylvinite": "Potash", "carnallite": "Potash", "langbeinite": "Potash",
    "kaolin": "Clay", "kaolinite": "Clay", "bentonite": "Clay", "fire clay": "Clay", "fuller's earth": "Clay",
    "gravel": "Sand and Gravel", "sand & gravel": "Sand and Gravel", "sand, gravel": "Sand and Gravel",
    "silica": "Quartz", "silica sand": "Sand", "industrial sand": "Sand",
    "chrysotile": "Asbestos", "amphibole asbestos": "Asbestos", "crocidolite": "Asbestos",
    "platinum": "Platinum-Group Elements", "palladium": "Platinum-Group Elements",
    "pge": "Platinum-Group Elements", "rhodium": "Platinum-Group Elements",
    "iridium": "Platinum-Group Elements", "osmium": "Platinum-Group Elements",
    "ruthenium": "Platinum-Group Elements",
    "crushed stone": "Stone", "dimension stone": "Stone", "building stone": "Stone",
    "sandstone": "Stone", "basalt": "Stone", "trap rock": "Stone",
    "gemstones": "Gemstone", "gem": "Gemstone", "gems": "Gemstone",
    "mica": "Mica", "muscovite": "Mica", "phlogopite": "Mica", "sericite": "Mica",
}


def slug(name: str) -> str:
    """Lower-case identifier for a commodity name ("Sand and Gravel" -> sand_and_gravel)."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _key(text: str) -> str:
    """Matching key: lower case, single spaces."""
    return " ".join(text.lower().replace("_", " ").split())


@dataclass
class Vocabulary:
    """Lookup tables from every known spelling to a canonical species id."""

    by_qid: dict[str, str] = field(default_factory=dict)
    by_name: dict[str, str] = field(default_factory=dict)
    by_mrds_code: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def species(self) -> list[str]:
        """Every canonical id, sorted."""
        return sorted(self.labels)

    def canonical(self, observed: str | None, uri: str | None = None) -> str | None:
        """The canonical id for a Q-id URI and/or an observed name; None when unknown."""
        if uri:
            qid = uri.rsplit("/", 1)[-1]
            if qid in self.by_qid:
                return self.by_qid[qid]
        if not observed:
            return None
        text = observed.strip()
        hit = self.by_name.get(_key(text))
        if hit:
            return hit
        hit = self.by_mrds_code.get(text.upper())
        if hit:
            return hit
        return None

    def from_mrds_code(self, code: str) -> str | None:
        """The canonical id for a USGS MRDS commodity code (AU, SDG, CLY_K, ...)."""
        code = code.strip().upper()
        return self.by_mrds_code.get(code) or self.by_mrds_code.get(code.split("_")[0])


def load_vocabulary(path: Path = COMMODITY_CSV) -> Vocabulary:
    """Build the vocabulary from MinMod's commodity table plus the ore-mineral table."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    by_id = {r["minmod_id"]: r for r in rows}
    vocab = Vocabulary()

    def top_name(row: dict[str, str]) -> str:
        name = row["name"]
        if " > " in name:  # "Clay > Kaolin": a grade of its parent commodity
            parent = by_id.get(row["parent"])
            return top_name(parent) if parent else name.split(" > ")[0]
        return name

    for row in rows:
        name = top_name(row)
        cid = slug(name)
        vocab.labels.setdefault(cid, name)
        vocab.by_qid[row["minmod_id"]] = cid
        for spelling in [row["name"], row["geokb_name"], *row["aliases"].split("|")]:
            if spelling.strip():
                vocab.by_name.setdefault(_key(spelling), cid)
        if " > " in row["name"]:
            vocab.by_name.setdefault(_key(row["name"].split(" > ", 1)[1] + " " + name), cid)
        if row["mrds_code"]:
            vocab.by_mrds_code[row["mrds_code"].upper()] = cid
    # Compound names ("Barium-Barite") also answer to each part ("barite", "barium").
    for row in rows:
        if "-" in row["name"] and " > " not in row["name"]:
            for part in row["name"].split("-"):
                vocab.by_name.setdefault(_key(part), slug(top_name(row)))
    for mineral, commodity in ORE_MINERALS.items():
        target = vocab.by_name.get(_key(commodity))
        if target is None:
            raise ValueError(f"ore-mineral table names unknown commodity {commodity!r}")
        vocab.by_name.setdefault(_key(mineral), target)
    return vocab


@lru_cache
def vocabulary() -> Vocabulary:
    """The bundled vocabulary, loaded once."""
    return load_vocabulary()
