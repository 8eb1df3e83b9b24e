"""The whole-map ensemble on a two-node Ray cluster gives the local path's layers for the same mask seed."""

from __future__ import annotations

import numpy as np
import pytest
from serve.synthetic import small_grid, write_synthetic_cube

from backend.inference.cube_inputs import CubeSource
from backend.inference.engine import InferenceEngine
from backend.inference.ensemble import EnsembleResult, run_ensemble
from backend.inference.masks import MaskSchedule, training_masking
from backend.inference.reinference import map_evaluator
from backend.settings import Settings

from .models import write_context_model

pytest.importorskip("ray", reason="Ray is not installed (the scale extra: pip install -e '.[scale]')")


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Settings:
    """A synthetic cube and a tiny model on a path both nodes read, and the settings of an ensemble over them."""
    root = tmp_path_factory.mktemp("shared")
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


@pytest.fixture(scope="module")
def local(shared) -> EnsembleResult:
    """The local path's result, once for the module."""
    return local_ensemble(shared)


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


def test_the_cluster_gives_the_local_layers(two_nodes, shared, local):
    on_ray, stats = ray_ensemble(shared)
    assert stats["actors"] == 2 and stats["nodes"] == 2, stats
    assert_same_layers(local, on_ray)
    assert np.array_equal(local.mean, on_ray.mean, equal_nan=True), "folded in round order: bit for bit"
    assert np.isfinite(on_ray.mean).all() and (on_ray.count == shared.ensemble_masks).all()
    assert np.nanmax(on_ray.std) > 1e-3, "the model sees the hidden regions: the rounds differ"


def test_a_worker_node_lost_mid_run_changes_nothing(two_nodes, shared, local):
    worker = next(n for n in two_nodes.nodes if n.name.startswith("worker") and n.proc.poll() is None)
    seen: list[int] = []

    def kill_worker_once(done: int, total: int) -> None:
        """Kill the worker node (every process of it) when the first round is folded."""
        if not seen:
            worker.kill()
        seen.append(done)

    on_ray, stats = ray_ensemble(shared, progress=kill_worker_once)
    assert seen[0] < seen[-1] == on_ray.evaluations, "the node was lost with rounds still to do"
    assert_same_layers(local, on_ray)
    two_nodes.wait_for_alive(1)
