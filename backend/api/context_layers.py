"""Context layers of the map page: each covariate of the cube, and a hillshade of its elevation.

The cube stores its covariates normalised (``(value - mean) / std``) in one multi-band GeoTIFF on the grid,
without overviews. For tiles, a covariate is written once, back in its own units, as a single-band
web-optimised COG (Web Mercator, with overviews) under ``<state_dir>/context/``, named after the checksum of
the cube's covariates file: a rebuilt cube gets new files, and a file appears under its name only when complete.
The list of covariates is read from cube.json, so a covariate added to the cube appears without code changes.
Layers are addressed by id (``hillshade`` or a covariate's name); a client never names a file.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
from rasterio.io import MemoryFile
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles

from backend.cube.contract import COVARIATES_TIF, CUBE_JSON, BandSpec, CubeManifest, CubeMissingError, read_manifest
from backend.layers.catalog import LayerNotFound
from backend.layers.cog import WEB_MERCATOR
from backend.settings import PROJECT_ROOT

log = logging.getLogger(__name__)

#: The id of the hillshade, and the covariate it shades.
HILLSHADE = "hillshade"
ELEVATION = "elevation"
#: The provenance table kept next to bundled input files.
PROVENANCE_MD = "PROVENANCE.md"
#: Colours of a covariate's tiles: by name, then by units, else viridis.
COLORMAP_BY_NAME = {"elevation": "terrain", "slope": "magma", "roughness": "cividis", "geoid": "spectral_r"}
COLORMAP_BY_UNITS = {"mgal": "rdbu_r"}
DEFAULT_COLORMAP = "viridis"
#: What a context layer is.
ContextKind = Literal["hillshade", "covariate"]
#: Standard deviations either side of the mean that a covariate's colours span by default.
STRETCH_SD = 2.0


class ContextLayerNotFound(LayerNotFound):
    """No context layer with that id; the message lists the ids that exist."""


@dataclass(frozen=True)
class InputSource:
    """A file a covariate was computed from, its checksum and where it came from (source and licence)."""

    file: str
    sha256: str | None
    source: str | None


@dataclass(frozen=True)
class ContextLayer:
    """A covariate of the cube (or the hillshade of its elevation) as a tile layer."""

    id: str
    title: str
    kind: ContextKind
    band: int  # 1-based band of the cube's covariates file
    units: str | None
    description: str
    colormap: str | None
    rescale: tuple[float, float] | None
    inputs: tuple[InputSource, ...]


def _plain(text: str) -> str:
    """A markdown table cell as plain text (code spans and links unwrapped)."""
    text = re.sub(r"\[([^\]]*)\]\(([^)]*)\)", r"\1 (\2)", text)
    return text.replace("`", "").strip()


def provenance_rows(path: Path) -> dict[str, str]:
    """File name -> its "source, licence" cell of a PROVENANCE.md table (empty when there is none)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    rows: dict[str, str] = {}
    column: int | None = None
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if not cells:
            column = None
            continue
        lowered = [c.lower() for c in cells]
        if "file" in lowered and any("licence" in c or "license" in c for c in lowered):
            column = next(i for i, c in enumerate(lowered) if "licence" in c or "license" in c)
        elif column is not None and column < len(cells) and not set(cells[0]) <= set("-: "):
            rows[_plain(cells[0])] = _plain(cells[column])
    return rows


def _input_sources(band: BandSpec, manifest: CubeManifest) -> tuple[InputSource, ...]:
    """The input files of a covariate band with their checksums and provenance rows."""
    found = []
    checksums = {getattr(spec, "path", None): getattr(spec, "sha256", None) for spec in manifest.inputs.values()}
    for text in band.inputs or []:
        path = Path(text)
        folder = (path if path.is_absolute() else PROJECT_ROOT / path).parent
        source = provenance_rows(folder / PROVENANCE_MD).get(path.name)
        found.append(InputSource(file=text, sha256=checksums.get(text), source=source))
    return tuple(found)


def _covariate(band: BandSpec, index: int, manifest: CubeManifest) -> ContextLayer:
    """The context layer of one covariate band (colours span its mean +- STRETCH_SD standard deviations)."""
    norm = band.normalisation
    rescale = None
    if norm is not None and norm.std > 0:
        rescale = (max(norm.min, norm.mean - STRETCH_SD * norm.std), min(norm.max, norm.mean + STRETCH_SD * norm.std))
    colormap = COLORMAP_BY_NAME.get(band.name) or COLORMAP_BY_UNITS.get((band.units or "").lower(), DEFAULT_COLORMAP)
    return ContextLayer(id=band.name, title=band.name.replace("_", " ").capitalize(), kind="covariate", band=index,
                        units=band.units, description=band.description or "", colormap=colormap, rescale=rescale,
                        inputs=_input_sources(band, manifest))


def context_layers(manifest: CubeManifest) -> list[ContextLayer]:
    """The hillshade (when the cube has an elevation) and every covariate of cube.json, in band order."""
    spec = manifest.files.get(COVARIATES_TIF)
    covariates = [_covariate(b, i + 1, manifest) for i, b in enumerate(spec.bands if spec else [])]
    elevation = next((c for c in covariates if c.id == ELEVATION), None)
    if elevation is None:
        return covariates
    shade = ContextLayer(id=HILLSHADE, title="Hillshade", kind="hillshade", band=elevation.band, units=None,
                         description=f"shaded relief of the {elevation.description or 'elevation'}, lit from the "
                                     "north-west (TiTiler's hillshade algorithm)",
                         colormap="gray", rescale=None, inputs=elevation.inputs)
    return [shade, *covariates]


def denormalise(values: np.ndarray, mean: float, std: float) -> np.ndarray:
    """A normalised covariate back in its own units (NaN stays NaN)."""
    return (values.astype(np.float64) * std + mean).astype(np.float32)


def write_web_cog(values: np.ndarray, profile: dict[str, object], path: Path) -> None:
    """A float32 band (NaN = no data) on the grid as a Web Mercator COG with overviews, renamed into place."""
    cog = cog_profiles.get("deflate")
    cog.update(blockxsize=256, blockysize=256, predictor=3)
    source = {"driver": "GTiff", "count": 1, "dtype": "float32", "nodata": float("nan"),
              "height": values.shape[0], "width": values.shape[1], "crs": profile["crs"],
              "transform": profile["transform"]}
    tmp = path.with_name(f".{path.name}.{threading.get_ident()}.part")
    with MemoryFile() as mem:
        with mem.open(**source) as dst:
            dst.write(values, 1)
        with mem.open() as src:
            cog_translate(src, tmp, dict(cog), tms=WEB_MERCATOR, nodata=float("nan"), resampling="bilinear",
                          overview_resampling="average", in_memory=True, quiet=True)
    tmp.replace(path)


class ContextCatalog:
    """The context layers of a cube folder, and their tile files (written on first use)."""

    def __init__(self, cube_dir: Path, cache_dir: Path) -> None:
        self.cube_dir = cube_dir
        self.cache_dir = cache_dir
        self._lock = threading.Lock()
        self._read: tuple[float, CubeManifest, list[ContextLayer]] | None = None

    def _manifest(self) -> tuple[CubeManifest, list[ContextLayer]]:
        """cube.json and its context layers, read again when the file changes (CubeMissingError without one)."""
        path = self.cube_dir / CUBE_JSON
        try:
            mtime = path.stat().st_mtime
        except OSError:
            raise CubeMissingError(f"no cube at {self.cube_dir}: build it with `m3 cube build`") from None
        if self._read is None or self._read[0] != mtime:
            manifest = read_manifest(self.cube_dir)
            self._read = (mtime, manifest, context_layers(manifest))
        return self._read[1], self._read[2]

    def layers(self) -> list[ContextLayer]:
        """Every context layer of the cube (empty when the cube has no covariates)."""
        return self._manifest()[1]

    def get(self, layer_id: str) -> ContextLayer:
        """The context layer ``layer_id`` (ContextLayerNotFound naming the known ids)."""
        layers = self.layers()
        found = next((layer for layer in layers if layer.id == layer_id), None)
        if found is None:
            known = ", ".join(layer.id for layer in layers) or "none (the cube has no covariates)"
            raise ContextLayerNotFound(f"context layer {layer_id[:64]!r} does not exist; known: {known}")
        return found

    def path(self, layer: ContextLayer) -> Path:
        """The tile file of a layer, written now if it does not exist yet."""
        manifest, _ = self._manifest()
        digest = (manifest.checksums.get(COVARIATES_TIF) or "unversioned")[:16]
        band = manifest.files[COVARIATES_TIF].bands[layer.band - 1]
        path = self.cache_dir / f"{band.name}-{digest}.tif"
        if path.is_file():
            return path
        with self._lock:
            if not path.is_file():
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                with rasterio.open(self.cube_dir / COVARIATES_TIF) as src:
                    values, profile = src.read(layer.band), src.profile
                norm = band.normalisation
                if norm is not None:
                    values = denormalise(values, norm.mean, norm.std)
                write_web_cog(values.astype(np.float32), dict(profile), path)
                log.info("context layer %s written to %s", band.name, path)
        return path
