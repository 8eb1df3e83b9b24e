"""Many (configuration, model, seed) trainings or protocol units at once on this machine: ``m3 sweep`` on Ray.

A thin wrapper kept for the commands written with it: it starts a Ray cluster of this machine with
``--parallel`` CPUs (on a GPU machine each job gets 1/``--parallel`` of the GPUs, so that many trainings share
one device) and runs ``m3 sweep JOB... --out OUT --ray local``; the job list, resuming, ``--deadline`` and
``--pack`` are ``m3 sweep``'s (model/sweep.py). With ``--parallel 1`` and no deadline the jobs run one by one
in this process and Ray is not needed.

Usage (from the repository root, the train and scale extras installed):
    python3 scripts/gpu_sweep.py --out /tmp/sweep --parallel 16 --deadline 450 --pack "$OUT" \\
        configs/experiments/gpu_blind_ctrl.yaml:unet_known,unet_blind:0,1,2 \\
        configs/experiments/gpu_blind_rm.yaml:unet_blind:0,1,2
    python3 scripts/gpu_sweep.py --out runs/sweep --parallel 13 protocol:configs/demo.yaml:all
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    """Start a local Ray of ``--parallel`` CPUs and run ``m3 sweep`` on it; its exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("jobs", nargs="+", help="CONFIG, CONFIG:ARCH[,ARCH]:SEED[,SEED] or protocol:CONFIG:UNIT")
    parser.add_argument("--out", type=Path, required=True, help="parent of the run folders")
    parser.add_argument("--parallel", type=int, default=os.cpu_count() or 1, help="jobs at a time")
    parser.add_argument("--deadline", type=float, default=0.0, help="stop every job after this many seconds (0: none)")
    parser.add_argument("--pack", type=Path, help="write one tar of final.pt and log.csv files per run folder here")
    args = parser.parse_args()
    argv = ["sweep", *args.jobs, "--out", str(args.out)]
    if args.pack:
        argv += ["--pack", str(args.pack)]
    if args.parallel > 1 or args.deadline:
        try:
            import ray
        except ImportError:
            raise SystemExit("error: --parallel above 1 and --deadline run on Ray: pip install -e '.[scale]'") from None
        ray.init(num_cpus=args.parallel, include_dashboard=False, logging_level=logging.WARNING)
        gpus = ray.cluster_resources().get("GPU", 0) / args.parallel
        print(f"{args.parallel} jobs at a time on this machine ({gpus:g} GPU each)", flush=True)
        argv += ["--ray", "local", "--gpus", f"{gpus:g}", "--deadline", str(args.deadline)]
    from model.cli import model_app

    try:
        model_app(argv, prog_name="m3")
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
