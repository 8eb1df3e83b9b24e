"""Model speed on this machine: training steps/s, and onnxruntime vs torch inference on 256x256 windows.

Usage: .venv/bin/python bench/model_speed.py [--config configs/demo.yaml] [--run runs/demo] [--steps 20]
       [--batch 4] [--threads 1] [--repeats 5]

Training: the configured models' steps/s on real cube patches (after two warm-up steps).
Inference: a batch of 256x256 windows through the run's model.onnx (onnxruntime, CPU) and the same
weights in torch, in one process with the same thread count, so the ratio is like for like.
Prints a Markdown table (for BENCHMARKS.md) and writes bench/results/model_speed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def train_speed(exp, arch: str, steps: int) -> float:
    """Steps per second of one model's training loop on real patches."""
    import torch

    from model.losses import masked_loss
    from model.masking import MaskGenerator
    from model.patches import PatchSampler
    from model.train import new_network

    spec = exp.cfg.models[arch]
    net = new_network(exp, arch).train()
    opt = torch.optim.AdamW(net.parameters(), lr=spec.lr)
    sampler = PatchSampler(exp.cube, exp.split, MaskGenerator(exp.cfg.masking, len(exp.cube.species)),
                           exp.cfg.data.patch_cells)
    rng = np.random.default_rng(0)
    for i in range(steps + 2):
        if i == 2:
            start = time.perf_counter()
        b = sampler.batch(rng, spec.batch_size)
        loss, _ = masked_loss(net(torch.from_numpy(b.x)), torch.from_numpy(b.y), torch.from_numpy(b.loss_mask),
                              exp.cfg.loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps / (time.perf_counter() - start)


def inference_speed(exp, run: Path, batch: int, repeats: int, threads: int) -> dict:
    """Median seconds per batch of 256x256 windows: onnxruntime vs torch, same weights."""
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
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).random((batch, n_ch, 256, 256)).astype(np.float32)
        model = ProbabilityModel(net).eval()

        def timed(fn) -> float:
            fn()
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            return statistics.median(times)

        with torch.no_grad():
            t_torch = timed(lambda: model(torch.from_numpy(x)))
        t_ort = timed(lambda: session.run(["prob"], {"x": x}))
    return {"batch": batch, "torch_s": t_torch, "onnxruntime_s": t_ort, "ratio_torch_over_ort": t_torch / t_ort,
            "trained_weights": ckpt.exists()}


def main() -> None:
    """Run the benchmark and print the Markdown table."""
    import torch

    from model.config import load_config
    from model.train import open_experiment

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "demo.yaml")
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "demo")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    exp = open_experiment(cfg, base=ROOT)
    rows = {arch: train_speed(exp, arch, args.steps) for arch in cfg.models}
    inf = inference_speed(exp, args.run, args.batch, args.repeats, args.threads)
    result = {"machine": platform.processor() or platform.machine(), "threads": args.threads,
              "torch": torch.__version__, "train_steps_per_s": rows, "inference": inf,
              "patch_cells": cfg.data.patch_cells,
              "batch_sizes": {a: cfg.models[a].batch_size for a in cfg.models}}
    out = ROOT / "bench" / "results" / "model_speed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"| measurement ({args.threads} thread(s), torch {torch.__version__}, CPU) | value |")
    print("|---|---|")
    for arch, sps in rows.items():
        print(f"| training {arch}, batch {cfg.models[arch].batch_size} x {cfg.data.patch_cells}^2 | "
              f"{sps:.2f} steps/s ({1 / sps:.2f} s/step) |")
    print(f"| inference torch, batch {inf['batch']} x 256^2 | {inf['torch_s'] * 1000:.0f} ms |")
    print(f"| inference onnxruntime, batch {inf['batch']} x 256^2 | {inf['onnxruntime_s'] * 1000:.0f} ms |")
    print(f"| torch / onnxruntime time ratio (same run) | {inf['ratio_torch_over_ort']:.2f} |")


if __name__ == "__main__":
    main()
