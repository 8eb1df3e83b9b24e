"""The whole-map (CONUS) ensemble alone: single-evaluation time and the ensemble's time, no database.

Usage: .venv/bin/python bench/ensemble.py [--model runs/demo] [--cube cube] [--masks 50] [--mask-seed 0]
       [--single-runs 5] [--providers CUDAExecutionProvider,CPUExecutionProvider] [--sliding]
       [--compare-graphs] [--against DIR]

What ``m3 infer`` does before it writes layers, timed: the cube is read, the onnxruntime engine opened
with the first available provider, and ``run_ensemble`` evaluates E mask rounds (every cell hidden E
times; 2 E evaluations at the demo model's region_fraction of 0.5) through ``MapEvaluator``
(on a GPU, one whole-grid model call per evaluation unless ``--sliding``; on the CPU, sliding windows
over CONUS, as the settings choose). Reports the median single-evaluation time and the ensemble's time
(the reduction to mean and std included), prints a Markdown table and writes bench/results/ensemble.json.
This is the benchmark for the paper-setting ensemble on one H100 (E = 50); bench/serve.py runs the full
pipeline with the database on the CPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def gpu_name() -> str | None:
    """The GPU's name from nvidia-smi, if there is one."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "runs" / "demo")
    parser.add_argument("--cube", type=Path, default=ROOT / "cube")
    parser.add_argument("--masks", type=int, default=50, help="E, mask rounds (the paper's setting: 50)")
    parser.add_argument("--mask-seed", type=int, default=0, help="seed of the mask draw")
    parser.add_argument("--single-runs", type=int, default=5, help="timed single evaluations (after a warm-up)")
    parser.add_argument("--providers", default="CUDAExecutionProvider,CPUExecutionProvider")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: all)")
    parser.add_argument("--sliding", action="store_true", help="sliding windows even on a GPU")
    parser.add_argument("--diagnose", action="store_true",
                        help="also time the plain whole-grid pass, the GPU compute alone (inputs and output left "
                             "on the device) and an onnxruntime profile of one evaluation, by operator type")
    parser.add_argument("--compare-graphs", action="store_true",
                        help="also time single evaluations through the members' full (gated) graphs beside their "
                             "all-hidden graphs, alternately in one run, and check the hidden cells agree")
    parser.add_argument("--against", type=Path, default=None, metavar="DIR",
                        help="also time single evaluations of the model in DIR (an earlier export of the same "
                             "networks, e.g. before a graph change) beside --model's, alternately in one run, and "
                             "check the hidden cells agree")
    parser.add_argument("--require-gpu", action="store_true",
                        help="stop at once if onnxruntime fell back to the CPU (100 CPU evaluations take hours)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    import numpy as np

    from backend.inference.contract import load_model_card
    from backend.inference.cube_inputs import CubeSource
    from backend.inference.engine import InferenceEngine
    from backend.inference.ensemble import run_ensemble
    from backend.inference.masks import MaskSchedule, draw_round, training_masking
    from backend.inference.runner import MapEvaluator
    from backend.settings import Settings

    settings = Settings(development=True)
    # the memory arena on, as m3 infer runs the whole-map pass (backend.inference.reinference)
    engine = InferenceEngine(load_model_card(args.model), args.providers.split(","), args.threads, 1,
                             cpu_mem_arena=True)
    if args.require_gpu and not engine.on_gpu:
        raise SystemExit(f"--require-gpu: onnxruntime runs on {engine.provider}")
    cube = CubeSource.open(args.cube)
    cube.check_model(engine.card)
    t0 = time.perf_counter()
    arrays = cube.read()
    read_s = time.perf_counter() - t0
    whole = settings.gpu_whole_map and engine.on_gpu and not args.sliding

    def map_evaluator(eng: InferenceEngine, all_hidden: bool = True) -> MapEvaluator:
        """The whole-map evaluator of m3 infer for ``eng`` (``all_hidden``: the members' all-hidden graphs)."""
        return MapEvaluator(eng, arrays, settings.window_size, settings.window_overlap, settings.window_batch,
                            needed=arrays.conus, band_rows=settings.window_band_rows, whole=whole,
                            margin=settings.window_margin, all_hidden=all_hidden)

    evaluate = map_evaluator(engine)
    n_sp = len(engine.card.species)
    masking = training_masking(engine.card)
    mask = np.broadcast_to(draw_round((0,), arrays.shape, masking).region(0), (n_sp, *arrays.shape))
    single = []
    for _ in range(args.single_runs + 1):
        t0 = time.perf_counter()
        prob = evaluate(mask)
        single.append(time.perf_counter() - t0)
    conus_prob = prob[:, arrays.conus]
    assert np.isfinite(conus_prob).all() and conus_prob.min() >= 0 and conus_prob.max() <= 1
    graphs = None
    if args.compare_graphs:
        full = map_evaluator(engine, all_hidden=False)
        graphs = compare_graphs(full, evaluate, mask, arrays.conus, args.single_runs)
        full.close()
    against = None
    if args.against is not None:
        other_engine = InferenceEngine(load_model_card(args.against), args.providers.split(","), args.threads, 1,
                                       cpu_mem_arena=True)
        cube.check_model(other_engine.card)
        other = map_evaluator(other_engine)
        against = {"model": other_engine.card.name,
                   **compare_graphs(other, evaluate, mask, arrays.conus, args.single_runs, ("against", "model"))}
        other.close()
        del other, other_engine

    done = []

    def progress(d: int, total: int) -> None:
        done.append(time.perf_counter())
        if d % 25 == 0 or d == total:
            logging.info("evaluation %d of %d", d, total)

    t0 = time.perf_counter()
    schedule = MaskSchedule(arrays.shape, masking, args.masks, args.mask_seed)
    result = run_ensemble(evaluate, engine.card.species, schedule, settings.ensemble_taper_cells, progress=progress)
    ensemble_s = time.perf_counter() - t0
    evaluate.close()
    del evaluate
    # after the ensemble, one extra session at a time (three at once ran an 80 GB H100 out of memory)
    diagnosis = diagnose(engine, arrays, mask, args.single_runs, prob) if args.diagnose and whole else None
    mean_conus = result.mean[:, arrays.conus]
    assert np.isfinite(mean_conus).all()

    gpu = gpu_name()
    runs = single[1:]
    out = {
        "machine": gpu or (platform.processor() or platform.machine()),
        "cpu_count": os.cpu_count(), "provider": engine.provider, "whole_grid_pass": whole,
        "grid": list(arrays.shape), "species": n_sp, "model": engine.card.name,
        "cube_read_s": round(read_s, 2),
        "single_eval_s": {"median": statistics.median(runs), "min": min(runs), "max": max(runs),
                          "first_cold": single[0]},
        "ensemble": {"masks": args.masks, "mask_seed": args.mask_seed, "evaluations": result.evaluations,
                     "seconds": ensemble_s, "per_eval_s": ensemble_s / result.evaluations},
        "mean_prospectivity_conus": float(mean_conus.mean()),
        "diagnosis": diagnosis, "graphs": graphs, "against": against,
    }
    path = ROOT / "bench" / "results" / "ensemble.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nmachine: {out['machine']}, {os.cpu_count()} CPUs; provider {engine.provider}; "
          f"{'one whole-grid call' if whole else 'sliding windows over CONUS'} per evaluation")
    print("| measure | result |")
    print("|---|---|")
    print(f"| CONUS single evaluation ({arrays.shape[0]} x {arrays.shape[1]} cells), median of {len(runs)} | "
          f"{statistics.median(runs):.3f} s (min {min(runs):.3f}, max {max(runs):.3f}; first {single[0]:.2f} s) |")
    print(f"| ensemble of E = {args.masks} mask rounds ({result.evaluations} evaluations) | "
          f"{ensemble_s:.1f} s ({ensemble_s / result.evaluations:.3f} s/eval) |")

    if graphs:
        print(f"| single evaluation, full (gated) graphs, median of {args.single_runs} | {graphs['full_s']:.3f} s |")
        print(f"| single evaluation, all-hidden graphs, same run | {graphs['hidden_s']:.3f} s "
              f"({graphs['speedup']:.2f}x; hidden cells differ by at most {graphs['max_abs_diff']:.2e}) |")
    if against:
        print(f"| single evaluation, {against['model']} (--against), median of {args.single_runs} | "
              f"{against['against_s']:.3f} s |")
        print(f"| single evaluation, {engine.card.name} (--model), same run | {against['model_s']:.3f} s "
              f"({against['speedup']:.2f}x; hidden cells differ by at most {against['max_abs_diff']:.2e}) |")
    if diagnosis:
        for key, value in diagnosis.items():
            print(f"| {key} | {value} |")


def compare_graphs(first, second, mask, conus, runs: int, names: tuple[str, str] = ("full", "hidden")) -> dict:
    """Single evaluations through two evaluators (by default the full and the all-hidden graphs), alternately.

    Returns each one's median as ``<name>_s``, the ratio first / second, the parity and every run's time.
    Parity is the largest difference over the CONUS cells the mask hides (the cells the ensemble reads).
    """
    import numpy as np

    a, b = first(mask), second(mask)  # warm-up, and the parity check
    cells = mask[0] & conus
    diff = float(np.abs(a[:, cells] - b[:, cells]).max())
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(runs):
        for name, fn in zip(names, (first, second), strict=True):
            t0 = time.perf_counter()
            fn(mask)
            times[name].append(time.perf_counter() - t0)
    f, s = (statistics.median(times[name]) for name in names)
    return {f"{names[0]}_s": f, f"{names[1]}_s": s, "speedup": f / s, "max_abs_diff": diff, "runs": times}


def median_time(fn, runs: int) -> float:
    """Median wall time of ``runs`` calls after one warm-up."""
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def diagnose(engine, arrays, mask, runs: int, reference) -> dict:
    """Where a whole-grid evaluation's time goes (GPU), one extra session open at a time.

    For the CumSum block lengths 16 (the default), 48 and 0 (the export's CumSum kept): the
    device-resident pass and the GPU compute alone (hide mask bound on the device, output left
    there), side by side in one run; then an operator profile of one evaluation, and last the plain
    whole-grid pass (650 MB in, 216 MB out per evaluation) through the engine's own session.
    """
    import gc

    import numpy as np
    import onnxruntime as ort

    from backend.inference.device_map import _PREFIX, DeviceMapRunner, wrap_model
    from backend.inference.runner import MapEvaluator

    out: dict = {}
    h, w = arrays.shape
    for block in (16, 48, 0):
        runner = DeviceMapRunner(engine, arrays, cumsum_block=block)
        name = f"CumSum block {block}" if block else "CumSum as exported"
        out[f"{name}: max |difference| from the ensemble's evaluator"] = float(np.abs(runner(mask) - reference).max())
        out[f"{name}: device-resident pass (hide mask in, probabilities out), median s"] = round(
            median_time(lambda r=runner: r(mask), runs), 4)
        hidden = np.zeros_like(runner._hidden)
        hidden[0, :, :h, :w] = mask
        binding = runner.session.io_binding()
        binding.bind_ortvalue_input(_PREFIX + "labels", runner._labels)
        binding.bind_ortvalue_input(_PREFIX + "rest", runner._rest)
        binding.bind_ortvalue_input(_PREFIX + "hidden", ort.OrtValue.ortvalue_from_numpy(hidden, runner.device, 0))
        binding.bind_output(engine.card.output_name, runner.device)
        out[f"{name}: GPU compute alone (nothing copied), median s"] = round(
            median_time(lambda r=runner, b=binding: r.session.run_with_iobinding(b), runs), 4)
        if block == 16:
            feed = {_PREFIX + "hidden": hidden, _PREFIX + "labels": runner._labels.numpy(),
                    _PREFIX + "rest": runner._rest.numpy()}
        del binding
        runner.close()
        del runner
        gc.collect()
    # operator profile of one evaluation (default rewrite)
    opts = ort.SessionOptions()
    opts.enable_profiling = True
    tmp = tempfile.mkdtemp(prefix="m3-ort-profile-")
    opts.profile_file_prefix = str(Path(tmp) / "ort_profile")
    prof = ort.InferenceSession(wrap_model(engine.card.onnx_path.read_bytes(), engine.card), opts,
                                providers=engine.session.get_providers(),
                                provider_options=[engine.session.get_provider_options()[p]
                                                  for p in engine.session.get_providers()])
    prof.run(None, feed)
    prof.run(None, feed)
    events = json.loads(Path(prof.end_profiling()).read_text())
    del prof, feed
    gc.collect()
    shutil.rmtree(tmp, ignore_errors=True)
    by_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            by_op[op] = by_op.get(op, 0.0) + e.get("dur", 0) / 2e6  # two runs, microseconds -> s per run
    top = sorted(by_op.items(), key=lambda kv: -kv[1])[:10]
    out["operator time per evaluation (profile, CumSum block 16), s"] = ", ".join(f"{k} {v:.3f}" for k, v in top)
    plain = MapEvaluator(engine, arrays, whole=True, resident=False)
    out["plain whole-grid pass (650 MB in, 216 MB out per evaluation), median s"] = round(
        median_time(lambda: plain(mask), runs), 4)
    plain.close()
    return out


if __name__ == "__main__":
    main()
