"""Reading the data cube (labels, coverage, covariates, states) into memory for training and evaluation."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio

log = logging.getLogger(__name__)

#: Files of the cube (format 2) that older cubes lack; :func:`load_cube` reads them when present.
SURVEY_TIF = "labels_survey.tif"
NATIONAL_TIF = "labels_national.tif"
STATES_TIF = "states.tif"


@dataclass
class CubeArrays:
    """The cube's layers on its grid: presence per species, coverage, covariates and their validity."""

    species: list[str]
    covariates: list[str]
    labels: np.ndarray  # uint8 (S, H, W) presence 0/1
    coverage: np.ndarray  # bool (H, W): cells in states with systematic records
    cov: np.ndarray  # float32 (K, H, W), as stored (normalised), NaN where invalid
    valid: np.ndarray  # uint8 (K, H, W)
    cube_sha256: str = ""
    survey_labels: np.ndarray | None = None  # uint8 (S, H, W): presence from systematic sources only
    national_labels: np.ndarray | None = None  # uint8 (S, H, W): presence from the national thematic sets only
    state_index: np.ndarray | None = None  # uint8 (H, W): 0 in no state, else 1 + position in state_codes
    state_codes: list[str] = field(default_factory=list)  # postal codes of the 48 states and DC, sorted
    covered_states: list[str] = field(default_factory=list)  # states of the coverage rule in the cube
    conus: np.ndarray | None = None  # bool (H, W): cells inside the 48 conterminous states and DC

    @property
    def shape(self) -> tuple[int, int]:
        """Grid (rows, cols)."""
        return self.coverage.shape

    def state_mask(self, code: str) -> np.ndarray:
        """The cells (bool (H, W)) whose centre lies in the state with postal code ``code``."""
        if self.state_index is None or not self.state_codes:
            raise ValueError(
                f"the cube has no state index ({STATES_TIF}), so state {code!r} cannot be located; "
                "rebuild the cube with `m3 cube build`"
            )
        if code not in self.state_codes:
            raise ValueError(f"state {code!r} unknown in the cube; known: {', '.join(self.state_codes)}")
        return self.state_index == self.state_codes.index(code) + 1


def _pick(names: list[str], wanted: list[str] | None, what: str) -> list[int]:
    """Band indices (0-based) for the wanted names, with an error naming the known ones."""
    if wanted is None:
        return list(range(len(names)))
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise ValueError(f"{what} {unknown} unknown in the cube; known: {', '.join(names)}")
    return [names.index(w) for w in wanted]


def _read(path: Path, indices: list[int]) -> tuple[np.ndarray, list[str]]:
    """Read 0-based band indices of a GeoTIFF and all its band descriptions."""
    with rasterio.open(path) as src:
        names = [d or f"band{i + 1}" for i, d in enumerate(src.descriptions)]
        data = src.read([i + 1 for i in indices]) if indices else np.zeros((0, src.height, src.width))
    return data, names


def _descriptions(path: Path) -> list[str]:
    """Band descriptions of a GeoTIFF."""
    with rasterio.open(path) as src:
        return [d or f"band{i + 1}" for i, d in enumerate(src.descriptions)]


def _presence(path: Path, species: list[str]) -> np.ndarray | None:
    """uint8 presence bands of the species from a labels GeoTIFF, or None when the cube lacks the file."""
    if not path.is_file():
        return None
    data, _ = _read(path, _pick(_descriptions(path), species, "species"))
    return (data > 0).astype(np.uint8)


def load_cube(cube_dir: Path, species: list[str] | None = None, covariates: list[str] | None = None) -> CubeArrays:
    """Load the layers the model needs from a cube folder written by ``m3 cube build``."""
    meta_path = cube_dir / "cube.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found; build the cube with `m3 cube build --out {cube_dir}`")
    sha = hashlib.sha256(meta_path.read_bytes()).hexdigest()
    species_names = _descriptions(cube_dir / "labels.tif")
    s_idx = _pick(species_names, species, "species")
    labels, _ = _read(cube_dir / "labels.tif", s_idx)
    cov_names = _descriptions(cube_dir / "covariates.tif")
    k_idx = _pick(cov_names, covariates, "covariates")
    cov, _ = _read(cube_dir / "covariates.tif", k_idx)
    valid_names = _descriptions(cube_dir / "covariates_valid.tif")
    v_idx = []
    for k in k_idx:
        name = cov_names[k]
        v_idx.append(valid_names.index(f"{name}_valid") if f"{name}_valid" in valid_names else valid_names.index(name))
    valid, _ = _read(cube_dir / "covariates_valid.tif", v_idx)
    cover_names = _descriptions(cube_dir / "coverage.tif")
    coverage, _ = _read(cube_dir / "coverage.tif", [0, 1] if len(cover_names) > 1 else [0])
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    chosen = [species_names[i] for i in s_idx]
    state_index, state_codes = None, []
    if (cube_dir / STATES_TIF).is_file() and meta.get("states"):
        index, _ = _read(cube_dir / STATES_TIF, [0])
        state_index, state_codes = index[0].astype(np.uint8), [str(c) for c in meta["states"]]
    cube = CubeArrays(
        species=chosen, covariates=[cov_names[k] for k in k_idx],
        labels=(labels > 0).astype(np.uint8), coverage=coverage[0] > 0, cov=cov.astype(np.float32),
        valid=(valid > 0).astype(np.uint8), cube_sha256=sha,
        survey_labels=_presence(cube_dir / SURVEY_TIF, chosen),
        national_labels=_presence(cube_dir / NATIONAL_TIF, chosen),
        state_index=state_index, state_codes=state_codes,
        covered_states=list(meta.get("coverage_rule", {}).get("covered_states", [])),
        conus=coverage[1] > 0 if coverage.shape[0] > 1 else None,
    )
    cube.cov[cube.valid == 0] = np.nan
    log.info("cube %s: %d species, %d covariates, %d covered cells", cube_dir, len(cube.species),
             len(cube.covariates), int(cube.coverage.sum()))
    return cube


def cube_metadata(cube_dir: Path) -> dict:
    """The cube's cube.json as a dict."""
    return json.loads((cube_dir / "cube.json").read_text(encoding="utf-8"))
