"""The ensemble on Ray: one 1-CPU node against two, side by side in one run, and the layers of each compared.

Usage: .venv/bin/python bench/ray_ensemble.py [--rows 512] [--cols 768] [--width 16] [--layers 3] [--masks 24]
       [--repeats 3] [--check-local] [--out bench/results/ray_ensemble.json]

Starts a Ray cluster of two nodes on this machine (``ray start --head`` and ``ray start --address``, 1 CPU each,
each in its own temporary directory; stopped at the end), writes a synthetic cube and a seeded convolutional
ONNX model of the given size (tests/scale/models.py) into a temporary folder both nodes read, and times
``m3 infer --ray``'s ensemble (``RayEnsemble``: actors started, the cube read, every round evaluated and
folded, the mean and std reduced) with one evaluator actor (one node's CPU) and with two (one per node),
alternating, ``--repeats`` times each. Reports the median of each and their ratio, checks that every run gave
the same layers (and, with ``--check-local``, the local path's), prints a Markdown table and writes the JSON.
Run it on an otherwise idle machine: the two nodes need a core each.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))  # before bench/: tests/serve is a package, bench/serve.py a script

from machine import cpu_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--cols", type=int, default=768)
    parser.add_argument("--width", type=int, default=16, help="channels of the model's hidden layers")
    parser.add_argument("--layers", type=int, default=3, help="5x5 convolutions of the model")
    parser.add_argument("--masks", type=int, default=24, help="E, mask rounds (2 evaluations each)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each setting")
    parser.add_argument("--check-local", action="store_true", help="also compare with the local path's layers")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ray_ensemble.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a cluster of this machine for a few minutes

    import numpy as np
    import ray
    from scale.cluster import LocalCluster
    from scale.models import write_context_model
    from serve.synthetic import small_grid, write_synthetic_cube

    from backend.inference.cube_inputs import CubeSource
    from backend.inference.engine import InferenceEngine
    from backend.inference.ensemble import run_ensemble
    from backend.inference.masks import MaskSchedule, training_masking
    from backend.inference.ray_ensemble import RayEnsemble
    from backend.inference.reinference import map_evaluator
    from backend.settings import Settings

    work = Path(tempfile.mkdtemp(prefix="m3-ray-bench-"))
    write_synthetic_cube(work / "cube", small_grid(rows=args.rows, cols=args.cols))
    write_context_model(work / "model", width=args.width, layers=args.layers)
    settings = Settings(cube_dir=work / "cube", model_dir=work / "model", window_size=256, window_overlap=16,
                        window_margin=4, ensemble_masks=args.masks, ensemble_seed=0, ort_intra_threads=1)
    model = InferenceEngine.from_settings(settings)
    arrays = CubeSource.open(settings.cube_dir).read()
    schedule = MaskSchedule(arrays.shape, training_masking(model.card), args.masks, 0)
    load = os.getloadavg()[0]

    cluster = LocalCluster(work / "ray")
    times: dict[int, list[float]] = {1: [], 2: []}
    nodes: dict[int, list[int]] = {1: [], 2: []}  # nodes whose actor evaluated at least one round
    results = []
    try:
        cluster.start_head()
        cluster.add_worker()
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        cluster.wait_for_alive(2)
        for repeat in range(args.repeats):
            for actors in (1, 2):
                runner = RayEnsemble(settings, actors=actors)
                t0 = time.perf_counter()
                result = runner(None, model.card.species, schedule, settings.ensemble_taper_cells)
                times[actors].append(time.perf_counter() - t0)
                nodes[actors].append(runner.stats["nodes"])
                results.append(result)
                print(f"run {repeat + 1}, {actors} actor(s): {times[actors][-1]:.2f} s, rounds evaluated on "
                      f"{nodes[actors][-1]} node(s)", flush=True)
    finally:
        ray.shutdown()
        cluster.stop()
    same = all(np.array_equal(r.mean, results[0].mean, equal_nan=True)
               and np.array_equal(r.std, results[0].std, equal_nan=True) for r in results)
    local_same = None
    if args.check_local:
        evaluate = map_evaluator(settings, model, arrays, threads=1)
        local = run_ensemble(evaluate, model.card.species, schedule, settings.ensemble_taper_cells)
        local_same = bool(np.array_equal(local.mean, results[0].mean, equal_nan=True)
                          and np.array_equal(local.std, results[0].std, equal_nan=True))
    one, two = statistics.median(times[1]), statistics.median(times[2])
    report = {
        "bench": "ray_ensemble", "date": time.strftime("%Y-%m-%d"), "cpu": cpu_model(), "cores": os.cpu_count(),
        "load_1min_before": round(load, 2), "ray": ray.__version__,
        "grid": [args.rows, args.cols], "model": {"width": args.width, "layers": args.layers, "kernel": 5},
        "masks": args.masks, "evaluations": len(schedule), "repeats": args.repeats,
        "seconds": {"one_node": [round(t, 3) for t in times[1]], "two_nodes": [round(t, 3) for t in times[2]]},
        "median_s": {"one_node": round(one, 3), "two_nodes": round(two, 3)}, "speedup": round(one / two, 3),
        "nodes_used": {"one_node": nodes[1], "two_nodes": nodes[2]},
        "same_layers_every_run": same, "same_as_local": local_same,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\n| nodes (1 CPU each) | median of {args.repeats} (s) | runs (s) |\n| --- | --- | --- |")
    print(f"| 1 | {one:.2f} | {', '.join(f'{t:.2f}' for t in times[1])} |")
    print(f"| 2 | {two:.2f} | {', '.join(f'{t:.2f}' for t in times[2])} |")
    print(f"\nspeed-up {one / two:.2f}x; {len(schedule)} evaluations of a {args.rows} x {args.cols} grid; same layers "
          f"in every run: {same}; same as the local path: {local_same}; load before: {load:.2f}; wrote {args.out}")


if __name__ == "__main__":
    main()
