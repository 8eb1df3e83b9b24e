"""The cube as the service reads it: a cube folder checked against a model, read over windows of the grid."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from rasterio.windows import Window

from backend.cube.contract import (
    COVARIATES_TIF,
    CUBE_JSON,
    INPUT_TIFS,
    LABELS_TIF,
    SURVEYED_CHANNEL,
    VALID_TIF,
    CubeArrays,
    CubeMissingError,
    assemble_inputs,
    fill_species_channels,
    load_cube,
    read_manifest,
    sha256_file,
)
from backend.cube.grid import Grid
from backend.inference.contract import ModelCard, ModelContractError

__all__ = ["CubeArrays", "CubeMissingError", "CubeSource", "assemble_inputs", "fill_species_channels"]

log = logging.getLogger(__name__)


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
        manifest = read_manifest(folder)
        if manifest.grid is None:
            raise CubeMissingError(f"{folder / CUBE_JSON} has no grid; rebuild the cube with `m3 cube build`")
        for name in INPUT_TIFS:
            if not (folder / name).is_file():
                raise CubeMissingError(f"{folder / name} does not exist; rebuild the cube with `m3 cube build`")
        return cls(
            folder=folder, grid=Grid.from_json(manifest.grid.model_dump()),
            species=manifest.band_names(LABELS_TIF), covariate_names=manifest.band_names(COVARIATES_TIF),
            valid_names=manifest.band_names(VALID_TIF), sha256=sha256_file(folder / CUBE_JSON),
        )

    def full_window(self) -> Window:
        """The window of the whole grid."""
        return Window(0, 0, self.grid.width, self.grid.height)

    def read(self, window: Window | None = None) -> CubeArrays:
        """Every band model inputs may need over a window (whole grid by default); outside the grid is empty."""
        return load_cube(self.folder, window=window, inputs_only=True)

    def check_model(self, card: ModelCard) -> None:
        """ModelContractError when the model asks for a species or covariate this cube lacks."""
        for ch in card.channels:
            if ch.kind in ("visible", "hidden") and ch.name not in self.species:
                raise ModelContractError(f"model channel {ch} needs species {ch.name!r}; cube has {self.species}")
            if ch.kind == "cov" and ch.name not in self.covariate_names:
                raise ModelContractError(f"model channel {ch} not in cube covariates {self.covariate_names}")
            if ch.kind == "valid" and ch.name not in self.valid_names and f"{ch.name}_valid" not in self.valid_names:
                raise ModelContractError(f"model channel {ch} not in cube validity bands {self.valid_names}")
            if ch.kind == "surveyed" and str(ch) != SURVEYED_CHANNEL:
                raise ModelContractError(f"model channel {ch} unknown; the surveyed channel is {SURVEYED_CHANNEL}")
        missing = [s for s in card.species if s not in self.species]
        if missing:
            raise ModelContractError(f"model predicts {missing}, which the cube has no labels for")
        if card.cube_sha256 and card.cube_sha256 != self.sha256:
            log.warning("model %s was trained on cube %s, serving cube %s (cube.json sha256): results may differ",
                        card.name, card.cube_sha256[:12], self.sha256[:12])
