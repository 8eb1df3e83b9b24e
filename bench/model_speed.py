"""Model speed on this machine: training steps/s, and onnxruntime vs torch inference on 256x256 windows.

Usage: .venv/bin/python bench/model_speed.py [--config configs/demo.yaml] [--run runs/demo] [--steps 20]
       [--batch 4] [--threads 1] [--repeats 5] [--device cpu|cuda]

Training: the configured models' steps/s on real cube patches (after two warm-up steps).
Inference: a batch of 256x256 windows through the run's model.onnx (onnxruntime) and the same weights
in torch, in one process on the same device (CPU with the same thread count, or CUDA with
onnxruntime's CUDA provider), so the ratio is like for like. On CUDA both timings include the copies
to and from the GPU (the service feeds numpy arrays).
Prints a Markdown table (for BENCHMARKS.md) and writes bench/results/model_speed[_cuda].json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def train_speed(exp, arch: str, steps: int, device: str = "cpu") -> dict:
    """Steps per second of one model's training loop on real patches, and the share spent waiting for batches."""
    import torch

    from model.losses import masked_loss
    from model.masking import MaskGenerator
    from model.patches import PatchSampler
    from model.train import model_loss, model_masking, new_ema, new_network

    spec = exp.cfg.models[arch]
    net = new_network(exp, arch).to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=spec.lr)
    loss_cfg = model_loss(exp.cfg, spec)
    ema = new_ema(net, spec.ema_decay)  # as in training: updated after every step
    sampler = PatchSampler(exp.cube, exp.split, MaskGenerator(model_masking(exp.cfg, spec), len(exp.cube.species)),
                           exp.cfg.data.patch_cells)
    rng = np.random.default_rng(0)
    waiting = 0.0
    # as in model.train.train_model: the next batch is drawn in a background thread during each step
    with ThreadPoolExecutor(max_workers=1) as prefetch:
        pending = prefetch.submit(sampler.batch, rng, spec.batch_size)
        for i in range(steps + 2):
            if i == 2:
                if device != "cpu":
                    torch.cuda.synchronize()
                start, waiting = time.perf_counter(), 0.0
            t = time.perf_counter()
            b = pending.result()
            waiting += time.perf_counter() - t
            pending = prefetch.submit(sampler.batch, rng, spec.batch_size)
            x, y, m = (torch.from_numpy(a).to(device) for a in (b.x, b.y, b.loss_mask))
            loss, _ = masked_loss(net(x), y, m, loss_cfg)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update_parameters(net)
        if device != "cpu":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return {"steps_per_s": steps / seconds, "sampling_share": waiting / seconds}


def inference_speed(exp, run: Path, batch: int, repeats: int, threads: int, device: str = "cpu") -> dict:
    """Median seconds per batch of 256x256 windows: onnxruntime vs torch, same weights, same device."""
    import onnxruntime as ort
    import torch

    from model.export import export_onnx
    from model.networks import ProbabilityModel
    from model.train import load_trained, model_dir, new_network

    ckpt = model_dir(run, "unet", exp.cfg.train.seeds[0]) / "final.pt"
    net = load_trained(exp, "unet", ckpt) if ckpt.exists() else new_network(exp, "unet").eval()
    n_ch = 2 * len(exp.cube.species) + 2 * len(exp.cube.covariates)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(net, path, n_ch)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        providers = ["CUDAExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        session = ort.InferenceSession(str(path), opts, providers=providers)
        if session.get_providers()[0] != providers[0]:
            raise SystemExit(f"onnxruntime has no {providers[0]} here (available: {ort.get_available_providers()})")
        x = np.random.default_rng(0).random((batch, n_ch, 256, 256)).astype(np.float32)
        model = ProbabilityModel(net).to(device).eval()

        def torch_run() -> np.ndarray:
            out = model(torch.from_numpy(x).to(device)).cpu().numpy()
            return out

        def timed(fn) -> float:
            fn()
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            return statistics.median(times)

        with torch.no_grad():
            t_torch = timed(torch_run)
            ref = torch_run()
        t_ort = timed(lambda: session.run(["prob"], {"x": x}))
        diff = float(np.abs(session.run(["prob"], {"x": x})[0] - ref).max())
    return {"batch": batch, "device": device, "provider": providers[0], "torch_s": t_torch, "onnxruntime_s": t_ort,
            "ratio_torch_over_ort": t_torch / t_ort, "max_abs_diff": diff, "trained_weights": ckpt.exists()}


def main() -> None:
    """Run the benchmark and print the Markdown table."""
    import torch

    from model.config import GATED, load_config
    from model.train import open_experiment

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "demo.yaml")
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "demo")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--no-inference", action="store_true", help="training speed only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    cfg = load_config(args.config)
    exp = open_experiment(cfg, base=ROOT)
    # a gated model is not trained itself: its experts are, and are timed
    speeds = {arch: train_speed(exp, arch, args.steps, args.device) for arch in cfg.models
              if cfg.models[arch].arch != GATED}
    rows = {arch: v["steps_per_s"] for arch, v in speeds.items()}
    inf = None if args.no_inference else inference_speed(exp, args.run, args.batch, args.repeats, args.threads,
                                                         args.device)
    machine = torch.cuda.get_device_name() if args.device == "cuda" else (platform.processor() or platform.machine())
    result = {"machine": machine, "device": args.device, "config": cfg.name, "threads": args.threads,
              "torch": torch.__version__, "train_steps_per_s": rows,
              "sampling_share": {a: v["sampling_share"] for a, v in speeds.items()}, "inference": inf,
              "patch_cells": cfg.data.patch_cells,
              "batch_sizes": {a: cfg.models[a].batch_size for a in speeds}}
    out = ROOT / "bench" / "results" / ("model_speed.json" if args.device == "cpu" else "model_speed_cuda.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"| measurement ({machine}, {args.threads} CPU thread(s), torch {torch.__version__}, {cfg.name}) | value |")
    print("|---|---|")
    for arch, sps in rows.items():
        print(f"| training {arch}, batch {cfg.models[arch].batch_size} x {cfg.data.patch_cells}^2 | "
              f"{sps:.2f} steps/s ({1 / sps:.3f} s/step; "
              f"{100 * speeds[arch]['sampling_share']:.0f}% waiting for batches) |")
    if inf is None:
        return
    print(f"| inference torch, batch {inf['batch']} x 256^2 | {inf['torch_s'] * 1000:.1f} ms |")
    print(f"| inference onnxruntime, batch {inf['batch']} x 256^2 | {inf['onnxruntime_s'] * 1000:.1f} ms |")
    print(f"| torch / onnxruntime time ratio (same run) | {inf['ratio_torch_over_ort']:.2f} |")
    print(f"| max abs difference, onnxruntime vs torch | {inf['max_abs_diff']:.1e} |")


if __name__ == "__main__":
    main()
