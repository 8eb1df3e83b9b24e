"""How well does each covariate alone rank the national records of the unsurveyed states? (a first cue, not a test)

For every covariate band of a cube and each species: the share of the species' national-record cells
(``labels_national.tif``) outside the survey coverage (``coverage.tif``, inside CONUS) that fall in the top
``--top`` of the unsurveyed CONUS cells ranked by the covariate, and by its negative. Cells where the
covariate is missing rank last; ties at the threshold count in proportion (the expected share under random
tie-breaking). A random ranking puts ``--top`` of the records in the top. The issue's floor is the shipped
``roughness`` band: about 47% in the top 10%.

``--area surveyed`` asks the same inside the surveyed states (the cells the networks learn from), of their
survey records (``--records survey``) or of their national records: a cue that ranks the unsurveyed states'
records well but the surveyed states' poorly cannot be learnt from the surveyed states.

    .venv/bin/python scripts/covariate_signal.py --cube /tmp/cube-derived [--top 0.1] [--json out.json]
    .venv/bin/python scripts/covariate_signal.py --area surveyed --records survey
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.cube.contract import COVARIATES_TIF, COVERAGE_TIF, NATIONAL_TIF, SURVEY_TIF, read_manifest  # noqa: E402

BASELINE = "roughness"


def top_share(score: np.ndarray, targets: np.ndarray, top: float) -> float:
    """Share of ``targets`` (bool, same cells as ``score``) among the ``top`` fraction of cells by ``score``.

    NaN scores rank last; cells tied at the threshold count with the fraction of them that fits in the top.
    """
    n_top = int(round(top * score.size))
    s = np.where(np.isfinite(score), score, -np.inf)
    if n_top <= 0 or not targets.any():
        return float("nan")
    threshold = np.partition(s, s.size - n_top)[s.size - n_top]
    above, tied = s > threshold, s == threshold
    room = n_top - int(above.sum())
    tie_weight = room / int(tied.sum()) if tied.any() else 0.0
    hits = float(targets[above].sum()) + tie_weight * float(targets[tied].sum())
    return hits / float(targets.sum())


def read_layers(cube: Path, area: str = "unsurveyed", records: str = "national"
                ) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Covariate names, species, the CONUS mask of ``area`` and the presence (S, H, W) of ``records`` of a cube."""
    manifest = read_manifest(cube)
    with rasterio.open(cube / COVERAGE_TIF) as ds:
        coverage, conus = ds.read(1) > 0, ds.read(2) > 0
    with rasterio.open(cube / (NATIONAL_TIF if records == "national" else SURVEY_TIF)) as ds:
        presence = ds.read() > 0
    names = list(manifest.band_names(COVARIATES_TIF))
    return names, list(manifest.species), conus & (coverage if area == "surveyed" else ~coverage), presence


def main() -> None:
    """Print the table (markdown) and optionally write it as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cube", type=Path, default=Path("cube"))
    parser.add_argument("--top", type=float, default=0.1, help="fraction of the area's cells counted as the top")
    parser.add_argument("--json", type=Path, default=None, help="also write the shares here")
    parser.add_argument("--area", choices=("unsurveyed", "surveyed"), default="unsurveyed",
                        help="rank the CONUS cells outside the surveyed states, or inside them")
    parser.add_argument("--records", choices=("national", "survey"), default="national",
                        help="the records to find in the top (survey records exist inside the surveyed states only)")
    args = parser.parse_args()
    names, species, area, presence = read_layers(args.cube, args.area, args.records)
    targets = [presence[k][area] for k in range(len(species))]
    counts = [int(t.sum()) for t in targets]
    shares: dict[str, dict[str, list[float]]] = {}
    with rasterio.open(args.cube / COVARIATES_TIF) as ds:
        for k, name in enumerate(names):
            values = ds.read(k + 1)[area].astype(np.float64)
            shares[name] = {sign: [top_share(s * values, t, args.top) for t in targets]
                            for sign, s in (("+", 1.0), ("-", -1.0))}
    print(f"{args.area} CONUS cells: {int(area.sum()):,}; top {args.top:.0%}; random = {args.top:.0%}")
    print(f"{args.records}-record cells there: " + ", ".join(f"{s} {n}" for s, n in zip(species, counts, strict=True)))
    print()
    print("| covariate | sign | " + " | ".join(species) + " | mean | mean - roughness |")
    print("|---|---|" + "---|" * (len(species) + 2))
    base = float(np.nanmean(shares[BASELINE]["+"])) if BASELINE in shares else float("nan")
    for name in names:
        for sign in ("+", "-"):
            row = shares[name][sign]
            mean = float(np.nanmean(row))
            cells = " | ".join(f"{100 * v:.0f}" for v in row)
            print(f"| {name} | {sign} | {cells} | **{100 * mean:.1f}** | {100 * (mean - base):+.1f} |")
    if args.json:
        payload = {"cube": str(args.cube), "top": args.top, "area": args.area, "records": args.records,
                   "species": species, "targets": counts, "shares": shares}
        args.json.write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    main()
