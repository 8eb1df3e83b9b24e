"""Quick-look PNGs of every cube band, for people to look at (matplotlib, Agg backend)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.cube.grid import Grid, project_geometry

log = logging.getLogger(__name__)

#: Cells per quick-look pixel (block maximum for labels, block mean for covariates).
DEFAULT_FACTOR = 3


@dataclass(frozen=True)
class QuickLook:
    """One band to draw: its array on the grid and how to show it."""

    name: str
    data: np.ndarray
    kind: str  # "presence", "counts", "mask" or "continuous"
    title: str
    units: str = ""


def block_reduce(data: np.ndarray, factor: int, how: str) -> np.ndarray:
    """Downsample by whole blocks of ``factor`` cells: ``max`` (NaN-free input) or ``mean`` (NaN-aware)."""
    if factor <= 1:
        return data
    rows, cols = data.shape
    pr, pc = (-rows) % factor, (-cols) % factor
    fill = np.nan if how == "mean" else 0
    padded = np.pad(data.astype(np.float32), ((0, pr), (0, pc)), constant_values=fill)
    blocks = padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor)
    if how == "max":
        return blocks.max(axis=(1, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # all-NaN blocks stay NaN
        return np.nanmean(blocks, axis=(1, 3))


def state_lines(grid: Grid, factor: int) -> list[np.ndarray]:
    """State outline rings in quick-look pixel coordinates (for an offline base map)."""
    from backend.geo.boundaries import NOT_CONUS, load_states

    rings = []
    for state in load_states():
        if state.code in NOT_CONUS:
            continue
        geom = project_geometry(state.geometry, "EPSG:4326", grid.crs)
        polys = getattr(geom, "geoms", [geom])
        for poly in polys:
            if not hasattr(poly, "exterior"):
                continue
            xy = np.asarray(poly.exterior.coords)
            col = (xy[:, 0] - grid.x0) / grid.cell / factor - 0.5
            row = (grid.y0 - xy[:, 1]) / grid.cell / factor - 0.5
            rings.append(np.column_stack([col, row]))
    return rings


def render(
    out_dir: Path,
    grid: Grid,
    layers: Iterable[QuickLook],
    factor: int = DEFAULT_FACTOR,
    progress: bool = True,
) -> list[Path]:
    """Write one PNG per layer under ``out_dir``; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection
    from matplotlib.colors import LogNorm
    from tqdm import tqdm

    layers = list(layers)
    out_dir.mkdir(parents=True, exist_ok=True)
    outlines = state_lines(grid, factor)
    paths = []
    for layer in tqdm(layers, desc="quick-looks", unit="png", disable=not progress):
        fig, ax = plt.subplots(figsize=(10, 6.6), dpi=100)
        how = "mean" if layer.kind == "continuous" else "max"
        img = block_reduce(layer.data, factor, how)
        if layer.kind == "continuous":
            finite = img[np.isfinite(img)]
            lo, hi = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
            shown = ax.imshow(
                img,
                cmap="terrain" if "elev" in layer.name else "viridis",
                vmin=lo,
                vmax=hi,
                interpolation="nearest",
            )
        elif layer.kind == "counts":
            masked = np.ma.masked_less(img, 1)
            vmax = max(2.0, float(img.max()))
            shown = ax.imshow(masked, cmap="inferno_r", norm=LogNorm(vmin=1, vmax=vmax), interpolation="nearest")
        else:
            masked = np.ma.masked_less(img, 1)
            cmap = "Reds" if layer.kind == "presence" else "Blues"
            shown = ax.imshow(masked, cmap=cmap, vmin=0, vmax=1.2, interpolation="nearest")
        ax.add_collection(LineCollection(outlines, colors="0.45", linewidths=0.3))
        ax.set_xlim(-0.5, img.shape[1] - 0.5)
        ax.set_ylim(img.shape[0] - 0.5, -0.5)
        ax.set_axis_off()
        ax.set_title(layer.title, fontsize=11)
        if layer.kind in ("continuous", "counts"):
            bar = fig.colorbar(shown, ax=ax, fraction=0.03, pad=0.01)
            bar.set_label(layer.units)
        path = out_dir / f"{layer.name}.png"
        fig.savefig(path, bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
        paths.append(path)
    log.info("wrote %d quick-looks under %s", len(paths), out_dir)
    return paths
