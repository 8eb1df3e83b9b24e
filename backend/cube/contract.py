"""The cube contract: the files of a cube folder, cube.json as a typed model, reading the arrays, stacking inputs.

Training (``model``) and the service (``backend``) both read the cube through this module; it never imports
torch. The input channel vocabulary is ``visible:<species>``, ``hidden:<species>``, ``cov:<covariate>`` and
``valid:<covariate>`` (see docs/contracts.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import rasterio
from pydantic import BaseModel, ConfigDict, Field
from rasterio.windows import Window

log = logging.getLogger(__name__)

#: Version of the cube layout. 2 adds labels_survey.tif, labels_national.tif, states.tif and the "states" list;
#: the files of format 1 are unchanged, so its readers read format 2.
CUBE_FORMAT = 2
CUBE_JSON = "cube.json"
LABELS_TIF = "labels.tif"
SURVEY_TIF = "labels_survey.tif"
NATIONAL_TIF = "labels_national.tif"
COUNTS_TIF = "label_counts.tif"
CROSSREF_TIF = "crossref_counts.tif"
COVERAGE_TIF = "coverage.tif"
STATES_TIF = "states.tif"
COVARIATES_TIF = "covariates.tif"
VALID_TIF = "covariates_valid.tif"
#: Every GeoTIFF of a cube, in the order cube.json lists their checksums.
GEOTIFFS = (LABELS_TIF, SURVEY_TIF, NATIONAL_TIF, COUNTS_TIF, CROSSREF_TIF, COVERAGE_TIF, STATES_TIF,
            COVARIATES_TIF, VALID_TIF)
#: The GeoTIFFs model inputs are read from; every cube has them.
INPUT_TIFS = (LABELS_TIF, COVERAGE_TIF, COVARIATES_TIF, VALID_TIF)
QUICKLOOK_DIR = "quicklook"


class CubeMissingError(FileNotFoundError):
    """The cube folder lacks a file; the message names it and how to build the cube."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """The sha256 hex digest of a file."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------- cube.json


class _Part(BaseModel):
    """A part of cube.json; readers ignore keys they do not know (the builder writes none, see check_manifest)."""

    model_config = ConfigDict(extra="ignore")


class GridSpec(_Part):
    """``grid``: the raster grid every file shares."""

    crs: str
    cell_size_m: float
    height: int
    width: int
    transform: list[float]  # affine [a, b, c, d, e, f]
    bounds: list[float] = Field(default_factory=list)  # [minx, miny, maxx, maxy]


class NormalisationSpec(_Part):
    """``normalisation`` of a covariate band: statistics over its valid cells inside CONUS."""

    mean: float
    std: float
    min: float
    max: float
    valid_cells: int
    valid_fraction_conus: float
    # robust normalisation (derived covariates): z = (clip(value, clip_low, clip_high) - centre) / scale
    centre: float | None = None
    scale: float | None = None
    clip_low: float | None = None
    clip_high: float | None = None


class BandSpec(_Part):
    """One band of a file; which keys it has depends on the file's kind."""

    name: str
    meaning: str | None = None
    cells: int | None = None
    # presence and counts files
    sites: int | None = None
    max_per_cell: int | None = None
    sites_covered: int | None = None
    cells_covered: int | None = None
    # covariates.tif
    units: str | None = None
    description: str | None = None
    resampling: str | None = None
    normalisation: NormalisationSpec | None = None
    inputs: list[str] | None = None
    source: str | None = None
    licence: str | None = None


class FileSpec(_Part):
    """``files.<name>``: a raster's data type, kind, meaning and bands."""

    bands: list[BandSpec]
    dtype: str | None = None
    kind: Literal["presence", "counts", "mask", "index", "covariates"] | None = None
    meaning: str | None = None
    nodata: str | None = None


class SiteCountsSpec(_Part):
    """``sites``: located sites, and how many fall inside and outside the grid."""

    located: int
    inside_grid: int
    outside_grid: int


class CoverageSourceSpec(_Part):
    """One systematic source of the coverage rule."""

    source: str
    state: str
    name: str


class CoverageRuleSpec(_Part):
    """``coverage_rule``: which cells have systematic records."""

    description: str
    min_sites: int
    sources: list[CoverageSourceSpec]
    covered_states: list[str]


class SitesInputSpec(_Part):
    """``inputs.sites``: the site table the labels were counted from."""

    rows: int
    sha256: str
    sources: dict[str, int]


class InputFileSpec(_Part):
    """``inputs.<name>``: an input file, its path (relative to the repository when inside it) and sha256."""

    path: str
    sha256: str


class CubeManifest(_Part):
    """cube.json. A built cube has every field; older or hand-made cubes may lack the descriptive ones."""

    format: int = 1
    species: list[str]
    grid: GridSpec | None = None
    states: list[str] = Field(default_factory=list)
    sites: SiteCountsSpec | None = None
    files: dict[str, FileSpec] = Field(default_factory=dict)
    checksums: dict[str, str] = Field(default_factory=dict)
    coverage_rule: CoverageRuleSpec | None = None
    inputs: dict[str, SitesInputSpec | InputFileSpec] = Field(default_factory=dict)

    def band_names(self, file: str) -> tuple[str, ...]:
        """The band names of one of the cube's files, as cube.json lists them."""
        entry = self.files.get(file)
        if entry is None:
            raise KeyError(f"{CUBE_JSON} does not describe {file}; rebuild the cube with `m3 cube build`")
        return tuple(b.name for b in entry.bands)

    @property
    def covered_states(self) -> list[str]:
        """The states the coverage rule covers (none when cube.json has no rule)."""
        return list(self.coverage_rule.covered_states) if self.coverage_rule else []


def check_manifest(content: dict[str, Any]) -> CubeManifest:
    """cube.json content as :class:`CubeManifest`; ValueError when it has a key the model does not describe."""
    manifest = CubeManifest.model_validate(content)
    if manifest.model_dump(exclude_unset=True) != content:
        raise ValueError(f"{CUBE_JSON} content has keys that CubeManifest does not describe")
    return manifest


def read_manifest(folder: Path) -> CubeManifest:
    """The cube.json of a cube folder, checked against :class:`CubeManifest`."""
    path = folder / CUBE_JSON
    if not path.is_file():
        raise CubeMissingError(f"{path} does not exist; build the cube with `m3 cube build --out {folder}`")
    return CubeManifest.model_validate_json(path.read_bytes())


# ---------------------------------------------------------------------------------------------- arrays


@dataclass
class CubeArrays:
    """The cube's layers over the grid or a window of it: presence per species, coverage, covariates, validity."""

    species: list[str]
    covariates: list[str]
    labels: np.ndarray  # uint8 (S, H, W) presence 0/1
    coverage: np.ndarray  # bool (H, W): cells in states with systematic records
    cov: np.ndarray  # float32 (K, H, W), as stored (normalised), NaN where invalid
    valid: np.ndarray  # uint8 (K, H, W): validity of each covariate
    cube_sha256: str = ""  # sha256 of cube.json
    survey_labels: np.ndarray | None = None  # uint8 (S, H, W): presence from systematic sources only
    national_labels: np.ndarray | None = None  # uint8 (S, H, W): presence from the national thematic sets only
    state_index: np.ndarray | None = None  # uint8 (H, W): 0 in no state, else 1 + position in state_codes
    state_codes: list[str] = field(default_factory=list)  # postal codes of the 48 states and DC, sorted
    covered_states: list[str] = field(default_factory=list)  # states of the coverage rule in the cube
    conus: np.ndarray | None = None  # bool (H, W): cells inside the 48 conterminous states and DC

    @property
    def shape(self) -> tuple[int, int]:
        """Grid (rows, cols)."""
        rows, cols = self.coverage.shape
        return int(rows), int(cols)

    @property
    def conus_cells(self) -> np.ndarray:
        """The cells (bool (H, W)) inside CONUS; every cell when the cube has no conus band."""
        return self.conus if self.conus is not None else np.ones(self.shape, dtype=bool)

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

    def crop(self, rows: slice, cols: slice) -> CubeArrays:
        """The same layers over ``rows`` x ``cols`` (views, not copies)."""

        def cut(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[..., rows, cols]

        return dataclasses.replace(
            self, labels=self.labels[:, rows, cols], coverage=self.coverage[rows, cols], cov=self.cov[:, rows, cols],
            valid=self.valid[:, rows, cols], survey_labels=cut(self.survey_labels),
            national_labels=cut(self.national_labels), state_index=cut(self.state_index), conus=cut(self.conus),
        )


def _band_names(path: Path) -> list[str]:
    """Band descriptions of a GeoTIFF (``band<i>`` where a band has none)."""
    with rasterio.open(path) as src:
        return [d or f"band{i + 1}" for i, d in enumerate(src.descriptions)]


def _pick(names: Sequence[str], wanted: Sequence[str] | None, what: str) -> list[int]:
    """Band indices (0-based) for the wanted names (all by default), with an error naming the known ones."""
    if wanted is None:
        return list(range(len(names)))
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise ValueError(f"{what} {unknown} unknown in the cube; known: {', '.join(names)}")
    return [names.index(w) for w in wanted]


def _valid_indices(valid_names: Sequence[str], covariates: Sequence[str]) -> list[int]:
    """The validity band of each covariate: ``<name>_valid``, else a band named like the covariate."""
    out = []
    for name in covariates:
        band = f"{name}_valid" if f"{name}_valid" in valid_names else name
        if band not in valid_names:
            raise ValueError(f"covariate {name!r} has no validity band in {VALID_TIF}; known: {', '.join(valid_names)}")
        out.append(list(valid_names).index(band))
    return out


def _read(path: Path, indices: Sequence[int], window: Window | None, fill: float = 0) -> np.ndarray:
    """Bands (0-based indices) of a GeoTIFF over a window (the whole file by default; outside it is ``fill``)."""
    with rasterio.open(path) as src:
        if not indices:
            shape = (src.height, src.width) if window is None else (int(window.height), int(window.width))
            return np.zeros((0, *shape))
        bands = [i + 1 for i in indices]
        if window is None:
            return src.read(bands)
        return src.read(bands, window=window, boundless=True, fill_value=fill)


def _presence(path: Path, indices: Sequence[int], window: Window | None) -> np.ndarray:
    """uint8 presence 0/1 of the given bands of a labels GeoTIFF."""
    return (_read(path, indices, window) > 0).astype(np.uint8)


def _source_labels(folder: Path, species: Sequence[str], window: Window | None
                   ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Presence from systematic sources and from the national sets, each None where the cube lacks the file."""
    found: list[np.ndarray | None] = []
    for name in (SURVEY_TIF, NATIONAL_TIF):
        path = folder / name
        found.append(_presence(path, _pick(_band_names(path), species, "species"), window) if path.is_file() else None)
    return found[0], found[1]


def load_cube(folder: Path, species: Sequence[str] | None = None, covariates: Sequence[str] | None = None,
              window: Window | None = None, inputs_only: bool = False) -> CubeArrays:
    """Read a cube folder written by ``m3 cube build``: the chosen species and covariates (all by default).

    With ``window`` only that part of the grid is read and cells outside the grid are empty (no presence, no
    coverage, invalid covariates). ``inputs_only`` skips what model inputs do not need (labels per source
    and the state index).
    """
    manifest = read_manifest(folder)
    for name in INPUT_TIFS:
        if not (folder / name).is_file():
            raise CubeMissingError(f"{folder / name} does not exist; rebuild the cube with `m3 cube build`")
    species_names = _band_names(folder / LABELS_TIF)
    s_idx = _pick(species_names, species, "species")
    cov_names = _band_names(folder / COVARIATES_TIF)
    k_idx = _pick(cov_names, covariates, "covariates")
    chosen, chosen_cov = [species_names[i] for i in s_idx], [cov_names[k] for k in k_idx]
    cover = _read(folder / COVERAGE_TIF, [0, 1] if len(_band_names(folder / COVERAGE_TIF)) > 1 else [0], window)
    v_idx = _valid_indices(_band_names(folder / VALID_TIF), chosen_cov)
    cube = CubeArrays(
        species=chosen, covariates=chosen_cov, labels=_presence(folder / LABELS_TIF, s_idx, window),
        coverage=cover[0] > 0, cov=_read(folder / COVARIATES_TIF, k_idx, window, np.nan).astype(np.float32),
        valid=(_read(folder / VALID_TIF, v_idx, window) > 0).astype(np.uint8),
        cube_sha256=sha256_file(folder / CUBE_JSON), covered_states=manifest.covered_states,
        conus=cover[1] > 0 if cover.shape[0] > 1 else None,
    )
    cube.cov[cube.valid == 0] = np.nan
    if not inputs_only:
        cube.survey_labels, cube.national_labels = _source_labels(folder, chosen, window)
        if (folder / STATES_TIF).is_file() and manifest.states:
            cube.state_index = _read(folder / STATES_TIF, [0], window)[0].astype(np.uint8)
            cube.state_codes = list(manifest.states)
    log.log(logging.INFO if window is None else logging.DEBUG, "cube %s: %d species, %d covariates, %d covered cells",
            folder, len(cube.species), len(cube.covariates), int(cube.coverage.sum()))
    return cube


# ---------------------------------------------------------------------------------------------- inputs


#: How a model reads cells outside the surveyed states (the coverage rule) that hold no record of a species:
#: ``absent`` (as visible zeros, a known absence: the older models) or ``unknown`` (hidden, like any cell the
#: model is asked to fill in, with the ``surveyed:coverage`` channel saying which cells were surveyed).
UNSURVEYED_MODES = ("absent", "unknown")
#: The channel that marks surveyed cells (1) in a model that reads unsurveyed cells as unknown.
SURVEYED_CHANNEL = "surveyed:coverage"


def channel_names(species: Sequence[str], covariates: Sequence[str], unsurveyed: str = "absent") -> list[str]:
    """The standard channel order: visible and hidden per species, then covariates and their validity.

    With ``unsurveyed="unknown"`` the surveyed-cells channel comes last.
    """
    if unsurveyed not in UNSURVEYED_MODES:
        raise ValueError(f"unsurveyed mode {unsurveyed!r} unknown; known: {', '.join(UNSURVEYED_MODES)}")
    return ([f"visible:{s}" for s in species] + [f"hidden:{s}" for s in species]
            + [f"cov:{c}" for c in covariates] + [f"valid:{c}" for c in covariates]
            + ([SURVEYED_CHANNEL] if unsurveyed == "unknown" else []))


def unsurveyed_mode(spec: object) -> str:
    """A model's or layout's ``unsurveyed`` mode (``absent`` where it has none: models exported before it)."""
    return str(getattr(spec, "unsurveyed", "absent") or "absent")


def unknown_cells(cube: CubeArrays, species: str) -> np.ndarray:
    """(H, W) bool: cells outside the surveyed states with no record of ``species`` (unknown, not absent)."""
    return ~cube.coverage & (cube.labels[cube.species.index(species)] == 0)


class ChannelRef(Protocol):
    """An input channel: its kind (visible, hidden, cov, valid, surveyed) and the species or covariate it names."""

    @property
    def kind(self) -> str:
        """visible, hidden, cov or valid."""

    @property
    def name(self) -> str:
        """The species or covariate."""


class InputSpec(Protocol):
    """What stacking inputs needs from a model: its channels in order and the species its hide mask covers."""

    @property
    def channels(self) -> Sequence[ChannelRef]:
        """The input channels, in order."""

    @property
    def species(self) -> Sequence[str]:
        """The species of the hide mask's rows."""

    # An ``unsurveyed`` attribute (UNSURVEYED_MODES) is read where present; see :func:`unsurveyed_mode`.


@dataclass(frozen=True)
class InputChannel:
    """One channel of an :class:`InputLayout`."""

    kind: str
    name: str


@dataclass(frozen=True)
class InputLayout:
    """Channels in the standard order (:func:`channel_names`) for species and covariates, all species masked."""

    channels: tuple[InputChannel, ...]
    species: tuple[str, ...]
    unsurveyed: str = "absent"

    @classmethod
    def of(cls, species: Sequence[str], covariates: Sequence[str], unsurveyed: str = "absent") -> InputLayout:
        """The layout training feeds and export writes to model.json."""
        names = channel_names(species, covariates, unsurveyed)
        return cls(tuple(InputChannel(*n.split(":", 1)) for n in names), tuple(species), unsurveyed)


def assemble_inputs(spec: InputSpec, cube: CubeArrays, hidden: np.ndarray, out: np.ndarray | None = None,
                    pool: Executor | None = None) -> np.ndarray:
    """The model input (C, H, W) float32 for cube arrays and a hide mask ``hidden`` (S_spec, H, W).

    ``visible:<sp>`` is the presence with hidden cells zeroed, ``hidden:<sp>`` the mask itself, ``cov:`` and
    ``valid:`` the raw cube bands (NaN kept: the network maps NaN to 0 itself, as the exported graph does),
    ``surveyed:coverage`` the coverage. A model that reads unsurveyed cells as unknown also has every cell
    outside coverage without a record of a species hidden for that species (:func:`fill_species_channels`).
    With ``out`` (float32 (C, H, W), possibly a view into a larger padded buffer) the input is written there.
    """
    h, w = cube.shape
    x = np.empty((len(spec.channels), h, w), dtype=np.float32) if out is None else out
    if x.shape != (len(spec.channels), h, w):
        raise ValueError(f"input buffer has shape {x.shape}, expected {(len(spec.channels), h, w)}")
    index = {c: k for k, c in enumerate(cube.covariates)}
    for k, ch in enumerate(spec.channels):
        if ch.kind == "cov":
            x[k] = cube.cov[index[ch.name]]
        elif ch.kind == "valid":
            name = ch.name if ch.name in index else ch.name.removesuffix("_valid")
            x[k] = cube.valid[index[name]]
        elif ch.kind == "surveyed":
            x[k] = cube.coverage
    fill_species_channels(spec, cube, hidden, x, pool)
    return x


def fill_species_channels(spec: InputSpec, cube: CubeArrays, hidden: np.ndarray, x: np.ndarray,
                          pool: Executor | None = None) -> None:
    """Overwrite the visible and hidden channels of an input ``x`` for a new hide mask (in place).

    A species the mask does not cover is visible everywhere. In a model whose ``unsurveyed`` mode is
    ``unknown``, the cells outside coverage with no record of a species are hidden too, whatever the mask
    (their visible channel is 0 either way). With a thread ``pool`` the channels are written in parallel
    (numpy releases the GIL): on a GPU the whole-map pass is otherwise bound by this copy.
    """
    hidden = np.asarray(hidden, dtype=bool)
    index = {s: i for i, s in enumerate(spec.species)}
    cube_index = {s: i for i, s in enumerate(cube.species)}
    unknown = unsurveyed_mode(spec) == "unknown"

    def fill(k: int) -> None:
        ch = spec.channels[k]
        i = index.get(ch.name)
        if ch.kind == "hidden":
            x[k] = hidden[i] if i is not None else 0
            if unknown:
                x[k] = np.logical_or(x[k], unknown_cells(cube, ch.name))
        elif i is None:
            x[k] = cube.labels[cube_index[ch.name]]
        else:
            np.multiply(cube.labels[cube_index[ch.name]], ~hidden[i], out=x[k], casting="unsafe")

    todo = [k for k, ch in enumerate(spec.channels) if ch.kind in ("visible", "hidden")]
    if pool is None:
        for k in todo:
            fill(k)
    else:
        for _ in pool.map(fill, todo):
            pass
