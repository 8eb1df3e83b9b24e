"""The ensemble of the scale tests: a shared cube and model, the local path's result and the cluster's."""

from __future__ import annotations

import numpy as np
from serve.synthetic import small_grid, write_synthetic_cube

from backend.inference.cube_inputs import CubeSource
from backend.inference.engine import InferenceEngine
from backend.inference.ensemble import EnsembleResult, run_ensemble
from backend.inference.masks import MaskSchedule, training_masking
from backend.inference.reinference import map_evaluator
from backend.settings import Settings

from .models import write_context_model


def write_shared(root) -> Settings:  # noqa: ANN001 (a Path)
    """A synthetic cube and a model with spatial context under ``root``, and the settings of an ensemble over them."""
    write_synthetic_cube(root / "cube", small_grid(rows=384, cols=512))
    write_context_model(root / "model", width=16, layers=3)
    return Settings(cube_dir=root / "cube", model_dir=root / "model", window_size=128, window_overlap=16,
                    window_margin=4, ensemble_masks=8, ensemble_seed=3)


def local_ensemble(settings: Settings) -> EnsembleResult:
    """What ``m3 infer`` computes in one process."""
    model = InferenceEngine.from_settings(settings, cpu_mem_arena=True)
    arrays = CubeSource.open(settings.cube_dir).read()
    schedule = MaskSchedule(arrays.shape, training_masking(model.card), settings.ensemble_masks,
                            settings.ensemble_seed)
    evaluate = map_evaluator(settings, model, arrays)
    try:
        return run_ensemble(evaluate, model.card.species, schedule, settings.ensemble_taper_cells)
    finally:
        evaluate.close()


def ray_ensemble(settings: Settings, progress=None, **options) -> tuple[EnsembleResult, dict]:
    """The same on the cluster this process is connected to."""
    from backend.inference.ray_ensemble import RayEnsemble

    model = InferenceEngine.from_settings(settings)
    arrays = CubeSource.open(settings.cube_dir).read()
    schedule = MaskSchedule(arrays.shape, training_masking(model.card), settings.ensemble_masks,
                            settings.ensemble_seed)
    runner = RayEnsemble(settings, **options)
    return runner(None, model.card.species, schedule, settings.ensemble_taper_cells, progress=progress), runner.stats


def assert_same_layers(a: EnsembleResult, b: EnsembleResult) -> None:
    """Mean and std within 1e-6 (NaN where the other is NaN), the same counts and evaluations."""
    assert a.species == b.species and a.evaluations == b.evaluations
    np.testing.assert_array_equal(a.count, b.count)
    np.testing.assert_allclose(a.mean, b.mean, rtol=0, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(a.std, b.std, rtol=0, atol=1e-6, equal_nan=True)
