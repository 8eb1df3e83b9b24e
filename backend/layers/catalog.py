"""The layer catalog: versions in PostGIS, folders ``layers/v<N>/`` on disk, ids mapped to files."""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from backend.db.tables import clusters, layer_versions

log = logging.getLogger(__name__)

LAYER_ID = re.compile(r"^[a-z0-9_]+\.(prospectivity|uncertainty|discrepancy)$")
TEMP_LAYER_ID = re.compile(r"^infer-[0-9a-f]{16}\.[a-z0-9_]+$")


class LayerNotFound(LookupError):
    """No layer with that id in the version being served; the message lists what exists."""


@dataclass(frozen=True)
class LayerInfo:
    """One published layer: id (species.kind), its files (relative to the version folder) and statistics."""

    id: str
    species: str
    kind: str
    file: str
    native_file: str
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LayerVersion:
    """A published version: its number, folder and layers."""

    id: int
    folder: Path
    layers: dict[str, LayerInfo]
    published_at: str | None
    model: dict[str, Any]
    ensemble: dict[str, Any]

    def path(self, layer_id: str, native: bool = False) -> Path:
        """The file of a layer id (LayerNotFound when it is not in this version)."""
        info = self.layers.get(layer_id)
        if info is None:
            raise LayerNotFound(f"layer {layer_id!r} is not in layer version {self.id}; "
                                f"known: {', '.join(sorted(self.layers)) or 'none'}")
        return self.folder / (info.native_file if native else info.file)


def version_folder(layers_dir: Path, version: int) -> Path:
    """``layers_dir/v<N>``."""
    return layers_dir / f"v{version}"


def create_version(engine: sa.Engine, job_id: int | None, model: dict[str, Any], cube_sha256: str | None) -> int:
    """A new version row in status 'building'; its id is the N of the folder."""
    with engine.begin() as conn:
        return int(conn.execute(
            layer_versions.insert().values(job_id=job_id, model=model, cube_sha256=cube_sha256)
            .returning(layer_versions.c.id)).scalar_one())


def publish_version(conn: sa.Connection, version: int, layers: list[LayerInfo], ensemble: dict[str, Any]) -> None:
    """Mark a version ready and make it the current one (call inside the caller's transaction)."""
    conn.execute(layer_versions.update().where(layer_versions.c.is_current).values(is_current=False))
    conn.execute(layer_versions.update().where(layer_versions.c.id == version).values(
        status="ready", is_current=True, published_at=sa.func.now(), ensemble=ensemble,
        layers=[info.__dict__ for info in layers]))


def fail_version(engine: sa.Engine, version: int) -> None:
    """Mark a version failed (never current)."""
    with engine.begin() as conn:
        conn.execute(layer_versions.update().where(layer_versions.c.id == version)
                     .values(status="failed", is_current=False))


def load_current(engine: sa.Engine, layers_dir: Path) -> LayerVersion | None:
    """The current version from the database, or None before the first publication."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(layer_versions).where(layer_versions.c.is_current)).mappings().first()
    if row is None:
        return None
    infos = {d["id"]: LayerInfo(**d) for d in row["layers"]}
    return LayerVersion(id=row["id"], folder=version_folder(layers_dir, row["id"]), layers=infos,
                        published_at=row["published_at"].isoformat() if row["published_at"] else None,
                        model=row["model"], ensemble=row["ensemble"])


def prune_versions(engine: sa.Engine, layers_dir: Path, keep: int) -> list[int]:
    """Remove the folders (and clusters) of failed versions and of ready ones beyond the newest ``keep``.

    Versions still building are left alone; the current version is always kept.
    """
    removed: list[int] = []
    with engine.begin() as conn:
        rows = conn.execute(sa.select(layer_versions.c.id, layer_versions.c.status, layer_versions.c.is_current)
                            .order_by(layer_versions.c.id.desc())).all()
        ready = [r.id for r in rows if r.status == "ready"]
        current = {r.id for r in rows if r.is_current}
        doomed = [r.id for r in rows if r.status == "failed"] + [v for v in ready[keep:] if v not in current]
        for version in doomed:
            conn.execute(clusters.delete().where(clusters.c.layer_version == version))
            conn.execute(layer_versions.update().where(layer_versions.c.id == version).values(status="removed"))
            removed.append(version)
    for version in removed:
        shutil.rmtree(version_folder(layers_dir, version), ignore_errors=True)
    if removed:
        log.info("removed layer versions %s", removed)
    return removed


@dataclass
class TemporaryLayer:
    """A layer written by /api/infer, servable by the tiles endpoint until evicted."""

    id: str
    path: Path
    bounds: tuple[float, float, float, float]


class LayerCatalog:
    """Per-process view of the catalog: the current version (trusted for a short TTL) and temporary layers."""

    def __init__(self, engine: sa.Engine, layers_dir: Path, ttl_s: float = 1.0, temp_kept: int = 64) -> None:
        self.engine = engine
        self.layers_dir = layers_dir
        self.ttl_s = ttl_s
        self.temp_kept = temp_kept
        self._current: LayerVersion | None = None
        self._loaded_at = -1e18
        self._lock = threading.Lock()
        self._temp: OrderedDict[str, TemporaryLayer] = OrderedDict()

    def current(self) -> LayerVersion | None:
        """The version being served (re-read from the database after the TTL)."""
        now = time.monotonic()
        if now - self._loaded_at > self.ttl_s:
            version = load_current(self.engine, self.layers_dir)
            with self._lock:
                self._current, self._loaded_at = version, now
        return self._current

    def invalidate(self) -> None:
        """Forget the cached version (after publishing in this process)."""
        self._loaded_at = -1e18

    @property
    def temporary_dir(self) -> Path:
        """Where /api/infer layers are written (``layers/tmp``)."""
        return self.layers_dir / "tmp"

    def add_temporary(self, layer: TemporaryLayer, max_age_s: float = 3600.0) -> None:
        """Register an /api/infer layer, evicting the oldest beyond the limit and files older than an hour."""
        with self._lock:
            self._temp[layer.id] = layer
            while len(self._temp) > self.temp_kept:
                _, old = self._temp.popitem(last=False)
                old.path.unlink(missing_ok=True)
        cutoff = time.time() - max_age_s
        for path in self.temporary_dir.glob("infer-*.tif"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink(missing_ok=True)
            except OSError:
                continue

    def resolve(self, layer_id: str) -> tuple[Path, str]:
        """The file behind a layer id and a version token for caches (LayerNotFound otherwise)."""
        if TEMP_LAYER_ID.match(layer_id):
            temp = self._temp.get(layer_id)
            path = temp.path if temp is not None else self.temporary_dir / f"{layer_id}.tif"
            if not path.is_file():  # another worker process may have written it: the id names the file
                raise LayerNotFound(f"temporary layer {layer_id!r} is unknown or expired; run /api/infer again")
            return path, layer_id
        if not LAYER_ID.match(layer_id):
            raise LayerNotFound(f"layer id {layer_id!r} is not of the form <species>.<prospectivity|uncertainty|"
                                "discrepancy>; GET /api/layers lists them")
        version = self.current()
        if version is None:
            raise LayerNotFound("no layers are published yet; run `m3 infer` or POST /admin/reinference")
        return version.path(layer_id), f"v{version.id}"
