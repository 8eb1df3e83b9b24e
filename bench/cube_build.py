"""Time the CONUS cube build: median of several runs (target: at most 60 s on the 2-core machine).

    .venv/bin/python bench/cube_build.py postgresql+psycopg://user@host:port/db [--runs 3]
    .venv/bin/python bench/cube_build.py --minmod data/raw/minmod [--runs 3]   # no database needed

The sites are read once (the read is timed separately); each run builds the whole cube, with the
quick-looks unless --no-quicklook, into a fresh folder. Prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.cube.build import build_cube_from_sites  # noqa: E402
from backend.cube.contract import sha256_file  # noqa: E402
from backend.cube.grid import Grid  # noqa: E402
from backend.cube.sites import SiteTable, read_sites  # noqa: E402
from backend.settings import Settings  # noqa: E402

log = logging.getLogger("bench.cube_build")

def load_minmod_sites(root: Path) -> SiteTable:
    """The bundled records through the real ingester's parser and US filter, without a database."""
    from backend.ingest.minmod import read_path
    from backend.ingest.placement import place

    rows = []
    for parsed in read_path(root):
        for s in place(parsed.sites).sites:
            rows.append((s.source, s.record_id, s.lon, s.lat, tuple(s.species), s.state))
    rows.sort(key=lambda r: (r[0], r[1]))
    return SiteTable.from_records(
        lon=np.array([r[2] for r in rows]),
        lat=np.array([r[3] for r in rows]),
        species=[r[4] for r in rows],
        source=[r[0] for r in rows],
        state=[r[5] for r in rows],
    )


def load_sites(args: argparse.Namespace) -> tuple[SiteTable, float, str]:
    t0 = time.perf_counter()
    if args.minmod:
        sites = load_minmod_sites(Path(args.minmod))
        origin = f"MinMod archives in {args.minmod} (parsed by the ingester, no database)"
    else:
        from sqlalchemy import create_engine

        engine = create_engine(args.database_url)
        try:
            sites = read_sites(engine)
        finally:
            engine.dispose()
        origin = "PostGIS sites table"
    return sites, time.perf_counter() - t0, origin


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("database_url", nargs="?", help="SQLAlchemy URL of the PostGIS site store")
    parser.add_argument("--minmod", help="read sites from the bundled MinMod archives instead of a database")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="keep the last cube here (default: temporary)")
    parser.add_argument("--no-quicklook", action="store_true")
    args = parser.parse_args()
    if not args.database_url and not args.minmod:
        parser.error("give a database URL or --minmod DIR")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    sites, read_s, origin = load_sites(args)
    grid = Grid.conus()
    work = Path(tempfile.mkdtemp(prefix="cube-bench-"))
    totals: list[float] = []
    stages: dict[str, list[float]] = {}
    checksums = set()
    try:
        for i in range(args.runs):
            out = work / f"run{i}"
            timings: dict[str, float] = {}
            t0 = time.perf_counter()
            manifest = build_cube_from_sites(
                Settings(), sites, out, progress=False, quicklooks=not args.no_quicklook, timings=timings
            )
            totals.append(time.perf_counter() - t0)
            for key, value in timings.items():
                stages.setdefault(key, []).append(value)
            checksums.add(tuple(sha256_file(p) for p in sorted(out.glob("*.tif"))) + (sha256_file(manifest),))
            if i < args.runs - 1:
                shutil.rmtree(out)
        if args.out:
            if args.out.exists():
                shutil.rmtree(args.out)
            shutil.copytree(work / f"run{args.runs - 1}", args.out)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"## cube build ({platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()})\n")
    print(f"- sites: {len(sites):,} from {origin}; read in {read_s:.2f} s (not in the build time)")
    print(f"- grid: {grid.height} x {grid.width} cells ({grid.crs}, {grid.cell} m)")
    print(
        f"- runs: {args.runs}; quick-looks: {'no' if args.no_quicklook else 'yes'}; "
        f"identical outputs across runs: {'yes' if len(checksums) == 1 else 'NO'}\n"
    )
    print("| stage | median s | min s | max s |")
    print("| --- | ---: | ---: | ---: |")
    for key, values in stages.items():
        print(f"| {key} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |")
    print(f"| **total build** | **{statistics.median(totals):.2f}** | {min(totals):.2f} | {max(totals):.2f} |")
    return 0 if len(checksums) == 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
