"""On-request infill of a box: hide chosen species and regions, evaluate a small seeded ensemble."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from backend.inference.cube_inputs import CubeSource
from backend.inference.engine import InferenceEngine
from backend.inference.masks import draw_round, training_masking
from backend.inference.runner import MapEvaluator


@dataclass(frozen=True)
class InfillRequest:
    """A box of the grid, the species hidden in it (optionally only inside sub-windows), and the ensemble."""

    window: Window
    hide_species: tuple[str, ...] = ()
    hide_windows: tuple[Window, ...] = ()
    ensemble: int = 1
    seed: int = 0
    context: int = 32


@dataclass
class InfillResult:
    """Mean and std over the evaluations of every model species, on the requested window."""

    species: tuple[str, ...]
    mean: np.ndarray  # [S, h, w]
    std: np.ndarray   # [S, h, w]
    hidden: np.ndarray  # bool [S, h, w]: the user's hide mask
    evaluations: int
    seconds: float


def user_mask(species: tuple[str, ...], request: InfillRequest, shape: tuple[int, int], offset: int) -> np.ndarray:
    """The user's hide mask on the context-padded window: hidden species, everywhere or in the sub-windows."""
    hidden = np.zeros((len(species), *shape), dtype=bool)
    region = np.zeros(shape, dtype=bool)
    if request.hide_windows:
        for w in request.hide_windows:
            r0 = int(w.row_off - request.window.row_off) + offset
            c0 = int(w.col_off - request.window.col_off) + offset
            region[max(r0, offset):max(0, min(r0 + int(w.height), offset + int(request.window.height))),
                   max(c0, offset):max(0, min(c0 + int(w.width), offset + int(request.window.width)))] = True
    else:
        region[offset:offset + int(request.window.height), offset:offset + int(request.window.width)] = True
    for sp in request.hide_species:
        hidden[species.index(sp)] = region
    return hidden


def run_infill(model: InferenceEngine, cube: CubeSource, request: InfillRequest, window_size: int = 512,
               overlap: int = 64) -> InfillResult:
    """Evaluate the model on the box (with ``context`` cells around it) ``ensemble`` times and crop.

    Evaluation 0 hides only what the user asked; evaluation i > 0 also hides, for every species, the
    regions of one evaluation of a seeded mask round (as the whole-map ensemble draws them), so the
    same request always gives the same answer.
    """
    t0 = time.perf_counter()
    species = model.card.species
    ctx = request.context
    w = request.window
    padded = Window(w.col_off - ctx, w.row_off - ctx, w.width + 2 * ctx, w.height + 2 * ctx)
    arrays = cube.read(padded)
    shape = arrays.shape
    base = user_mask(species, request, shape, ctx)
    evaluate = MapEvaluator(model, arrays, window_size, overlap, threads=2)
    total = np.zeros((len(species), *shape), dtype=np.float64)
    total2 = np.zeros_like(total)
    masking = training_masking(model.card) if request.ensemble > 1 else None
    try:
        for i in range(request.ensemble):
            hidden = base.copy()
            if masking is not None and i > 0:
                hidden |= draw_round((request.seed, i), shape, masking).region(0)[None]
            prob = evaluate(hidden, member=i)  # the model's members (training seeds) in turn
            total += prob
            total2 += prob.astype(np.float64) ** 2
    finally:
        evaluate.close()
    n = request.ensemble
    mean = total / n
    std = np.sqrt(np.maximum(total2 / n - mean * mean, 0))
    crop = (slice(None), slice(ctx, ctx + int(w.height)), slice(ctx, ctx + int(w.width)))
    return InfillResult(species=species, mean=mean[crop].astype(np.float32), std=std[crop].astype(np.float32),
                        hidden=base[crop], evaluations=n, seconds=time.perf_counter() - t0)
