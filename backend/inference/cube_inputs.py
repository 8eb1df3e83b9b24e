"""Reading the cube and assembling model inputs in the channel order of the model contract."""

from __future__ import annotations

import json
import logging
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from backend.cube.grid import Grid
from backend.cube.store import sha256_file
from backend.inference.contract import ModelCard, ModelContractError

log = logging.getLogger(__name__)


class CubeMissingError(FileNotFoundError):
    """The cube folder lacks a file; the message names it and how to build the cube."""


@dataclass
class CubeArrays:
    """Cube bands over one window of the grid (the whole grid when ``window`` is None)."""

    grid: Grid
    window: Window
    species: tuple[str, ...]
    labels: np.ndarray       # uint8 [S, h, w] presence
    coverage: np.ndarray     # bool [h, w]
    conus: np.ndarray        # bool [h, w]
    covariates: dict[str, np.ndarray]  # float32 [h, w], NaN invalid
    valid: dict[str, np.ndarray]       # uint8 [h, w]

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the window."""
        return int(self.window.height), int(self.window.width)


@dataclass(frozen=True)
class CubeSource:
    """A cube folder written by ``m3 cube build`` (cube.json, labels, coverage, covariates)."""

    folder: Path
    grid: Grid
    species: tuple[str, ...]
    covariate_names: tuple[str, ...]
    valid_names: tuple[str, ...]
    sha256: str

    @classmethod
    def open(cls, folder: Path) -> CubeSource:
        """Describe the cube in ``folder`` from its cube.json."""
        manifest = folder / "cube.json"
        if not manifest.is_file():
            raise CubeMissingError(f"{manifest} does not exist; build the cube with `m3 cube build --out {folder}`")
        meta = json.loads(manifest.read_text(encoding="utf-8"))
        files = meta["files"]
        for name in ("labels.tif", "coverage.tif", "covariates.tif", "covariates_valid.tif"):
            if not (folder / name).is_file():
                raise CubeMissingError(f"{folder / name} does not exist; rebuild the cube with `m3 cube build`")
        return cls(
            folder=folder, grid=Grid.from_json(meta["grid"]),
            species=tuple(b["name"] for b in files["labels.tif"]["bands"]),
            covariate_names=tuple(b["name"] for b in files["covariates.tif"]["bands"]),
            valid_names=tuple(b["name"] for b in files["covariates_valid.tif"]["bands"]),
            sha256=sha256_file(manifest),
        )

    def full_window(self) -> Window:
        """The window of the whole grid."""
        return Window(0, 0, self.grid.width, self.grid.height)

    def read(self, window: Window | None = None) -> CubeArrays:
        """Every band the model may need over a window (whole grid by default); outside the grid is empty."""
        window = window or self.full_window()

        def band_stack(name: str, fill: float) -> np.ndarray:
            with rasterio.open(self.folder / name) as src:
                return src.read(window=window, boundless=True, fill_value=fill)

        labels = band_stack("labels.tif", 0)
        cover = band_stack("coverage.tif", 0)
        cov = band_stack("covariates.tif", np.nan).astype(np.float32, copy=False)
        valid = band_stack("covariates_valid.tif", 0)
        return CubeArrays(
            grid=self.grid, window=window, species=self.species, labels=labels,
            coverage=cover[0] > 0, conus=cover[1] > 0 if cover.shape[0] > 1 else cover[0] >= 0,
            covariates={n: cov[i] for i, n in enumerate(self.covariate_names)},
            valid={n: valid[i] for i, n in enumerate(self.valid_names)},
        )

    def check_model(self, card: ModelCard) -> None:
        """ModelContractError when the model asks for a species or covariate this cube lacks."""
        for ch in card.channels:
            if ch.kind in ("visible", "hidden") and ch.name not in self.species:
                raise ModelContractError(f"model channel {ch} needs species {ch.name!r}; cube has {self.species}")
            if ch.kind == "cov" and ch.name not in self.covariate_names:
                raise ModelContractError(f"model channel {ch} not in cube covariates {self.covariate_names}")
            if ch.kind == "valid" and ch.name not in self.valid_names and f"{ch.name}_valid" not in self.valid_names:
                raise ModelContractError(f"model channel {ch} not in cube validity bands {self.valid_names}")
        missing = [s for s in card.species if s not in self.species]
        if missing:
            raise ModelContractError(f"model predicts {missing}, which the cube has no labels for")
        if card.cube_sha256 and card.cube_sha256 != self.sha256:
            log.warning("model %s was trained on cube %s, serving cube %s (cube.json sha256): results may differ",
                        card.name, card.cube_sha256[:12], self.sha256[:12])


def assemble_inputs(card: ModelCard, cube: CubeArrays, hidden: np.ndarray, out: np.ndarray | None = None,
                    pool: Executor | None = None) -> np.ndarray:
    """The model input [C, h, w] for cube arrays and a hide mask ``hidden`` [S_model, h, w] (bool).

    ``visible:<sp>`` is the presence with hidden cells zeroed, ``hidden:<sp>`` the mask itself,
    ``cov:`` and ``valid:`` the raw cube bands (the graph normalises and handles NaN). With ``out``
    (float32 [C, h, w], possibly a view into a larger padded buffer) the input is written there.
    """
    h, w = cube.shape
    x = np.empty((len(card.channels), h, w), dtype=np.float32) if out is None else out
    if x.shape != (len(card.channels), h, w):
        raise ValueError(f"input buffer has shape {x.shape}, expected {(len(card.channels), h, w)}")
    for k, ch in enumerate(card.channels):
        if ch.kind == "cov":
            x[k] = cube.covariates[ch.name]
        elif ch.kind == "valid":
            band = cube.valid.get(ch.name)
            x[k] = band if band is not None else cube.valid[f"{ch.name}_valid"]
    fill_species_channels(card, cube, hidden, x, pool)
    return x


def fill_species_channels(card: ModelCard, cube: CubeArrays, hidden: np.ndarray, x: np.ndarray,
                          pool: Executor | None = None) -> None:
    """Overwrite the visible and hidden channels of an input ``x`` for a new hide mask (in place).

    With a thread ``pool`` the channels are written in parallel (numpy releases the GIL): on a GPU the
    whole-map pass is otherwise bound by this single-threaded copy.
    """
    index = {s: i for i, s in enumerate(card.species)}
    cube_index = {s: i for i, s in enumerate(cube.species)}

    def fill(k: int) -> None:
        ch = card.channels[k]
        i = index.get(ch.name)
        if ch.kind == "hidden":
            x[k] = hidden[i] if i is not None else 0
        elif i is None:
            x[k] = cube.labels[cube_index[ch.name]]
        else:
            np.multiply(cube.labels[cube_index[ch.name]], ~hidden[i], out=x[k], casting="unsafe")

    todo = [k for k, ch in enumerate(card.channels) if ch.kind in ("visible", "hidden")]
    if pool is None:
        for k in todo:
            fill(k)
    else:
        for _ in pool.map(fill, todo):
            pass
