"""Map quality of the served layers: the seam index of each species' prospectivity, and stability between runs.

Usage:
    .venv/bin/python bench/map_quality.py [--layers layers/v2] [--compare layers/v3] [--cube cube]
                                          [--kind prospectivity] [--json bench/results/map_quality.json]

Seam index (backend.layers.quality.seam_index): the layer is cut into 128 x 128-cell windows from its
top-left corner, keeping windows wholly inside the served area (CONUS). In each window, for every column
boundary the median over rows of the absolute jump across it; the largest of those medians divided by the
window's mean absolute jump across column boundaries is the window's column score, and the same with rows
and columns swapped its row score. The index is the 90th percentile of the column and row scores of all
windows, pooled. A straight step line scores high, a natural raster or a smooth density map low.

- ``--layers`` (default: the highest ``layers/v<N>``): the seam index of every ``<species>.<kind>`` layer
  there (the grid-native COGs), and, with ``--cube``, of each cube covariate masked to CONUS as a reference.
- ``--compare``: another layer folder, e.g. an ``m3 infer --mask-seed 1`` run beside an ``--mask-seed 0``
  run: per species, Spearman's rank correlation over the CONUS cells and the 99th percentile of the
  absolute difference (backend.layers.quality.stability); with ``--cube`` also over the cells inside survey
  coverage and over the CONUS cells outside it.

Prints Markdown tables; ``--json`` also writes the figures.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.layers.quality import seam_index, stability  # noqa: E402


def latest_version(layers: Path) -> Path:
    """The ``v<N>`` folder with the highest N under ``layers``."""
    versions = [p for p in layers.glob("v*") if re.fullmatch(r"v\d+", p.name) and p.is_dir()]
    if not versions:
        raise SystemExit(f"no layer versions under {layers}; run `m3 infer` first")
    return max(versions, key=lambda p: int(p.name[1:]))


def read_layers(folder: Path, kind: str) -> dict[str, np.ndarray]:
    """Species -> the grid-native ``<species>.<kind>`` layer of a version folder."""
    out = {}
    for path in sorted(folder.glob(f"*.{kind}.native.tif")):
        with rasterio.open(path) as src:
            out[path.name.split(".")[0]] = src.read(1)
    if not out:
        raise SystemExit(f"{folder} has no *.{kind}.native.tif layers")
    return out


def covariate_seams(cube: Path, conus: np.ndarray | None) -> dict[str, float]:
    """The seam index of each covariate band of the cube, NaN outside ``conus`` (the layers' served area)."""
    out = {}
    with rasterio.open(cube / "covariates.tif") as src:
        for i, name in enumerate(src.descriptions, start=1):
            band = src.read(i).astype(np.float32)
            if conus is not None:
                band[~conus] = np.nan
            out[name or f"band {i}"] = seam_index(band)
    return out


def coverage_masks(cube: Path) -> dict[str, np.ndarray]:
    """The cube's covered cells and its CONUS cells outside coverage (coverage.tif: coverage, conus)."""
    with rasterio.open(cube / "coverage.tif") as src:
        covered, conus = src.read(1) > 0, src.read(2) > 0
    return {"inside coverage": covered, "outside coverage": conus & ~covered}


def compare_runs(layers: dict[str, np.ndarray], other: dict[str, np.ndarray], cube: Path | None) -> dict:
    """Per species, the stability of two runs over every cell both serve and, with a cube, by coverage."""
    parts = {"CONUS": None, **(coverage_masks(cube) if cube else {})}
    figures: dict = {}
    print("| species | cells | Spearman | p99 of abs difference |\n| --- | --- | --- | --- |")
    for sp in [sp for sp in layers if sp in other]:
        figures[sp] = {}
        for part, where in parts.items():
            s = stability(layers[sp], other[sp], where)
            figures[sp][part] = {"spearman": s.spearman, "p99_abs_diff": s.p99_abs_diff, "cells": s.cells}
            print(f"| {sp} | {part} ({s.cells}) | {s.spearman:.4f} | {s.p99_abs_diff:.4f} |")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=Path, default=None, help="a layer version folder (default: the latest)")
    parser.add_argument("--compare", type=Path, default=None, help="another version folder, for stability")
    parser.add_argument("--cube", type=Path, default=None, help="also score the cube's covariates (reference)")
    parser.add_argument("--kind", default="prospectivity", help="the layer kind to score")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()

    folder = args.layers or latest_version(ROOT / "layers")
    layers = read_layers(folder, args.kind)
    figures: dict = {"layers": str(folder), "kind": args.kind,
                     "seam_index": {sp: seam_index(a) for sp, a in layers.items()}}
    print(f"Seam index of {folder}/*.{args.kind} (90th percentile of 128-cell window scores)\n")
    print("| species | seam index |\n| --- | --- |")
    for sp, value in figures["seam_index"].items():
        print(f"| {sp} | {value:.2f} |")

    if args.cube:
        conus = np.isfinite(next(iter(layers.values())))
        figures["covariates_seam_index"] = covariate_seams(args.cube, conus)
        print(f"\nReference: the cube's covariates over the same area ({args.cube})\n")
        print("| covariate | seam index |\n| --- | --- |")
        for name, value in figures["covariates_seam_index"].items():
            print(f"| {name} | {value:.2f} |")

    if args.compare:
        figures["compare"] = str(args.compare)
        print(f"\nStability: {folder} against {args.compare} over the cells both serve\n")
        figures["stability"] = compare_runs(layers, read_layers(args.compare, args.kind), args.cube)

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
