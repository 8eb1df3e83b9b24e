"""Whole-map re-inference: ensemble, layers as COGs in a new version folder, clusters, one-transaction switch."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from backend.inference.contract import ModelCard
from backend.inference.cube_inputs import CubeArrays, CubeSource
from backend.inference.engine import InferenceEngine
from backend.inference.ensemble import EnsembleResult, discrepancy, fill_never_visible, run_ensemble
from backend.inference.jobs import update_job
from backend.inference.masks import MaskSchedule, training_masking
from backend.inference.runner import MapEvaluator
from backend.layers.catalog import (
    LayerInfo,
    create_version,
    fail_version,
    prune_versions,
    publish_version,
    version_folder,
)
from backend.layers.clusters import (
    Cluster,
    far_from_records,
    find_clusters,
    flag_threshold,
    store_clusters,
    surveyed_share,
)
from backend.layers.cog import LAYER_KINDS, LayerKind, layer_stats, write_layer
from backend.settings import Settings
from model.config import MaskConfig

log = logging.getLogger(__name__)

#: progress(fraction 0..1, message)
JobProgress = Callable[[float, str], None]


def job_progress(engine: sa.Engine, job_id: int, every_s: float = 0.5) -> JobProgress:
    """A progress callback that writes to the job row at most every ``every_s`` seconds."""
    last = [0.0]

    def report(fraction: float, message: str) -> None:
        """Log and store progress."""
        now = time.monotonic()
        if now - last[0] >= every_s or fraction >= 1.0:
            last[0] = now
            update_job(engine, job_id, progress=round(min(fraction, 1.0), 4), message=message)
        log.debug("job %d: %.0f%% %s", job_id, 100 * fraction, message)

    return report


def map_evaluator(settings: Settings, model: InferenceEngine, arrays: CubeArrays,
                  threads: int | None = None) -> MapEvaluator:
    """The whole-map evaluator of the settings: sliding windows over CONUS cells, or the whole grid on a GPU.

    The ensemble reads only the cells an evaluation hides, with every species hidden there, so the evaluator
    runs the members' all-hidden graphs where the model has them.
    """
    return MapEvaluator(model, arrays, settings.window_size, settings.window_overlap, settings.window_batch,
                        needed=arrays.conus_cells, band_rows=settings.window_band_rows,
                        whole=settings.gpu_whole_map and model.on_gpu, margin=settings.window_margin,
                        threads=threads, all_hidden=True)


def run_reinference(settings: Settings, engine: sa.Engine, job_id: int | None = None,
                    progress: JobProgress | None = None, model: InferenceEngine | None = None,
                    runner: Callable[..., EnsembleResult] | None = None) -> int:
    """Evaluate the ensemble over the whole cube and publish a new layer version; returns its number.

    ``runner`` runs the evaluations (default :func:`run_ensemble`, in this process; ``m3 infer --ray`` passes one
    that runs them on a Ray cluster, with the same signature and the same result for the same mask seed).
    Files are written to ``layers/.staging-v<N>`` and renamed to ``layers/v<N>`` only when complete; the
    database switches to version N in one transaction with its clusters. If anything fails or the process
    is killed, the version being served is untouched.
    """
    report = progress or (lambda f, m: None)
    # the whole-map pass runs in a process of its own (m3 infer or a job's worker): the arena's speed, and its
    # memory goes with the process
    model = model or InferenceEngine.from_settings(settings, cpu_mem_arena=True)
    card = model.card
    cube = CubeSource.open(settings.cube_dir)
    cube.check_model(card)
    version = create_version(engine, job_id, card.public(), cube.sha256)
    if job_id is not None:
        update_job(engine, job_id, layer_version=version)
    settings.layers_dir.mkdir(parents=True, exist_ok=True)
    staging = settings.layers_dir / f".staging-v{version}"
    final = version_folder(settings.layers_dir, version)
    try:
        report(0.01, "reading the cube")
        arrays = cube.read()
        evaluate = map_evaluator(settings, model, arrays)
        masking = training_masking(card)
        schedule = MaskSchedule(arrays.shape, masking, settings.ensemble_masks, settings.ensemble_seed)
        t0 = time.perf_counter()
        result = (runner or run_ensemble)(
            evaluate, card.species, schedule, settings.ensemble_taper_cells,
            progress=lambda d, t: report(0.05 + 0.75 * d / t, f"evaluation {d} of {t}"),
            members=len(model.members),
        )
        if card.unsurveyed == "unknown":
            report(0.8, "unsurveyed ground, unmasked")
            fill_never_visible(result, evaluate, never_visible(arrays), len(model.members))
        seconds = time.perf_counter() - t0
        evaluate.close()
        log.info("ensemble of %d evaluations on %s in %.1f s", result.evaluations, model.provider, seconds)
        staging.mkdir(parents=True)
        infos = _write_layers(staging, cube, arrays.labels, arrays.coverage, arrays.conus_cells, result, report)
        report(0.95, "finding clusters")
        context = context_cells(settings, card)
        found, thresholds = _flag_clusters(settings, cube, arrays.labels, arrays.coverage, result, context)
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
        ensemble = _ensemble_record(settings, model, masking, result, int(result.count[arrays.conus_cells].min()),
                                    seconds)
        ensemble["clusters"] = {"top_share": settings.cluster_top_share, "min_cells": settings.cluster_min_cells,
                                "site_distance_m": settings.cluster_site_distance_m,
                                "min_surveyed": settings.cluster_min_surveyed, "context_cells": context,
                                "thresholds": thresholds}
        with engine.begin() as conn:
            store_clusters(conn, version, found, cube.grid.crs)
            publish_version(conn, version, infos, ensemble)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)  # renamed, but the switch never committed: no one serves it
        fail_version(engine, version)
        raise
    report(1.0, f"published layer version {version}")
    prune_versions(engine, settings.layers_dir, settings.layers_keep)
    return version


def _ensemble_record(settings: Settings, model: InferenceEngine, masking: MaskConfig, result: EnsembleResult,
                     min_hidden: int, seconds: float) -> dict:
    """What a layer version records of the ensemble that made it (its clusters' settings are added after)."""
    return {"masks": settings.ensemble_masks, "seeds": len(model.members), "mask_seed": settings.ensemble_seed,
            "evaluations": result.evaluations, "min_hidden": min_hidden, "taper_cells": settings.ensemble_taper_cells,
            "regions": {"min_cells": masking.region_min_cells, "max_cells": masking.region_max_cells,
                        "fraction": masking.region_fraction},
            "seconds": round(seconds, 2), "provider": model.provider}


def never_visible(arrays: CubeArrays) -> np.ndarray:
    """CONUS cells outside the surveyed states without a record of any species: unknown for every species."""
    return arrays.conus_cells & ~arrays.coverage & (arrays.labels.max(axis=0) == 0)


def context_cells(settings: Settings, card: ModelCard) -> int:
    """The half-side of the square whose surveyed share a flagged cell needs (settings, else the model's reach)."""
    if settings.cluster_context_cells is not None:
        return settings.cluster_context_cells
    train = (card.raw.get("config") or {}).get("train") or {}
    return int(train.get("context_radius") or train.get("blur_radius") or 0)


def _flag_clusters(settings: Settings, cube: CubeSource, labels: np.ndarray, coverage: np.ndarray,
                   result: EnsembleResult, context: int = 0) -> tuple[list[Cluster], dict[str, float | None]]:
    """Each species' clusters (top share of its eligible cells) and the probability threshold that gave them.

    Eligible: at least ``cluster_site_distance_m`` from every record of the species, and with at least
    ``cluster_min_surveyed`` of the cells within ``context`` surveyed.
    """
    found: list[Cluster] = []
    thresholds: dict[str, float | None] = {}
    surrounded = (surveyed_share(coverage, context) >= settings.cluster_min_surveyed
                  if settings.cluster_min_surveyed > 0 else np.ones_like(coverage, dtype=bool))
    for i, sp in enumerate(result.species):
        known = labels[cube.species.index(sp)]
        disc = discrepancy(result.mean[i:i + 1], known[None], coverage)[0]
        eligible = far_from_records(known, cube.grid.cell, settings.cluster_site_distance_m) & surrounded
        threshold = flag_threshold(disc, eligible, settings.cluster_top_share)
        thresholds[sp] = None if threshold is None else round(threshold, 6)
        if threshold is not None:
            found += find_clusters(disc, cube.grid, sp, eligible=eligible, threshold=threshold,
                                   min_cells=settings.cluster_min_cells, limit=settings.cluster_max_per_species)
    return found, thresholds


def _write_layers(folder: Path, cube: CubeSource, labels: np.ndarray, coverage: np.ndarray, conus: np.ndarray,
                  result: EnsembleResult, report: JobProgress) -> list[LayerInfo]:
    """Write the layers of every species (each kind of LAYER_KINDS) as COGs; returns their catalog entries.

    Uncertainty is empty where fewer than two evaluations hid the cell (EnsembleResult.std is NaN there).
    """
    infos = []
    grid = cube.grid
    total = len(LAYER_KINDS) * len(result.species)
    evaluations = np.where(conus, result.count.astype(np.float32), np.nan)
    for i, sp in enumerate(result.species):
        arrays: dict[LayerKind, np.ndarray] = {
            "prospectivity": np.where(conus, result.mean[i], np.nan),
            "uncertainty": np.where(conus, result.std[i], np.nan),
            "discrepancy": discrepancy(result.mean[i:i + 1], labels[[cube.species.index(sp)]], coverage)[0],
            "evaluations": evaluations,
        }
        for kind, array in arrays.items():
            layer_id = f"{sp}.{kind}"
            write_layer(array, grid.crs, grid.transform, folder / f"{layer_id}.tif", folder / f"{layer_id}.native.tif",
                        description=f"{sp} {kind}: {LAYER_KINDS[kind].description}")
            infos.append(LayerInfo(id=layer_id, species=sp, kind=kind, file=f"{layer_id}.tif",
                                   native_file=f"{layer_id}.native.tif", stats=layer_stats(array)))
            report(0.8 + 0.15 * len(infos) / total, f"wrote {layer_id}")
    return infos
