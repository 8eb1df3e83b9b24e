"""Train many (configuration, model, seed) jobs at once on one machine, for a short rental of a GPU machine.

Each job is one ``m3 train --config C --out OUT/NAME --arch A --seed S`` in its own process (NAME: the
configuration's file name without ``.yaml``); up to ``--parallel`` run at a time, in the order given, so
that a rental that runs out still leaves the first jobs finished. At ``--deadline`` seconds every job still
running is stopped (its last checkpoint stays). Every 30 s one line reports the steps done and the
steps per second over all jobs. Afterwards each run folder's ``final.pt`` and ``log.csv`` files can be
packed with ``--pack DIR``: one tar per run folder (a rented machine may return only a few files).

Usage (from the repository root, torch and the project's dependencies importable):
    python3 scripts/gpu_sweep.py --out /tmp/sweep --parallel 16 --deadline 450 --pack "$OUT" \\
        configs/experiments/gpu_blind_ctrl.yaml:unet_known,unet_blind:0,1,2 \\
        configs/experiments/gpu_blind_rm.yaml:unet_blind:0,1,2

A job spec is ``CONFIG:ARCH[,ARCH...]:SEED[,SEED...]``; every ARCH x SEED is a job.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from model.config import ExperimentConfig

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


Job = tuple[Path, str, int, Path]


def parse_jobs(specs: list[str], out: Path) -> tuple[list[Job], dict[Path, ExperimentConfig]]:
    """(config, arch, seed, run folder) for every job spec, in order; each configuration, read once.

    Models a configuration does not have are refused.
    """
    from model.config import load_config

    jobs: list[Job] = []
    configs: dict[Path, ExperimentConfig] = {}
    for spec in specs:
        try:
            config, archs, seeds = spec.split(":")
        except ValueError:
            raise SystemExit(f"error: job spec {spec!r} is not CONFIG:ARCH[,ARCH]:SEED[,SEED]") from None
        path = Path(config)
        cfg = configs[path] = configs.get(path) or load_config(path)
        for arch in archs.split(","):
            if arch not in cfg.models:
                raise SystemExit(f"error: {arch!r} is not a model of {config}; configured: {', '.join(cfg.models)}")
            for seed in seeds.split(","):
                jobs.append((path, arch, int(seed), out / path.stem))
    return jobs, configs


def steps_done(run: Path, arch: str, seed: int) -> int:
    """The last step logged by one job (0 before its first log row)."""
    log_path = run / arch / f"seed-{seed}" / "log.csv"
    if not log_path.exists():
        return 0
    with log_path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return int(float(rows[-1][0])) if len(rows) > 1 else 0


def main() -> int:
    """Run the jobs; pack the run folders; exit 1 if any job did not finish."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("jobs", nargs="+", help="CONFIG:ARCH[,ARCH]:SEED[,SEED]")
    parser.add_argument("--out", type=Path, required=True, help="parent of the run folders")
    parser.add_argument("--parallel", type=int, default=os.cpu_count() or 1, help="jobs at a time")
    parser.add_argument("--deadline", type=float, default=0.0, help="stop every job after this many seconds (0: none)")
    parser.add_argument("--pack", type=Path, help="write one tar of final.pt and log.csv files per run folder here")
    args = parser.parse_args()
    from model.config import record_config

    jobs, configs = parse_jobs(args.jobs, args.out)
    for config, cfg in configs.items():  # written once, before the jobs race for it
        record_config(cfg, config, args.out / config.stem)
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    waiting = list(jobs)
    running: dict[Job, tuple[subprocess.Popen, IO[str]]] = {}
    finished: list[tuple[Job, int | str]] = []
    started = last_report = time.monotonic()
    resumed = sum(steps_done(j[3], j[1], j[2]) for j in jobs)  # steps of an earlier call, not counted in the rate
    print(f"{len(jobs)} jobs, {args.parallel} at a time", flush=True)
    while waiting or running:
        while waiting and len(running) < args.parallel:
            config, arch, seed, run = job = waiting.pop(0)
            log_file = (run / f"train-{arch}-{seed}.out").open("w", encoding="utf-8")
            cmd = [sys.executable, "-m", "model.cli", "train", "--config", str(config), "--out", str(run),
                   "--arch", arch, "--seed", str(seed), "--no-progress"]
            running[job] = (subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT),
                            log_file)
        time.sleep(2)
        for job, (proc, job_out) in list(running.items()):
            if proc.poll() is not None:
                job_out.close()
                del running[job]
                finished.append((job, proc.returncode))
                print(f"{time.monotonic() - started:6.0f} s  done {job[3].name} {job[1]} seed {job[2]} "
                      f"(exit {proc.returncode})", flush=True)
        now = time.monotonic()
        if now - last_report >= 30:
            last_report = now
            done = sum(steps_done(j[3], j[1], j[2]) for j in jobs)
            print(f"{now - started:6.0f} s  {len(running)} running, {len(waiting)} waiting, {len(finished)} done; "
                  f"{done} steps, {(done - resumed) / (now - started):.0f} steps/s over all jobs", flush=True)
        if args.deadline and now - started > args.deadline and running:
            print(f"deadline: stopping {len(running)} jobs; {len(waiting)} never started", flush=True)
            for proc, _ in running.values():
                proc.terminate()
            for job, (proc, job_out) in running.items():
                proc.wait()
                job_out.close()
                finished.append((job, "stopped"))
            running, waiting = {}, []
    failed = [(j, rc) for j, rc in finished if rc != 0]
    for job, rc in failed:
        print(f"not finished: {job[3].name} {job[1]} seed {job[2]} ({rc}); see {job[3]}/train-{job[1]}-{job[2]}.out")
    if args.pack:
        args.pack.mkdir(parents=True, exist_ok=True)
        for run in sorted({j[3] for j in jobs}):
            with tarfile.open(args.pack / f"{run.name}.tar", "w") as tar:
                for path in sorted(run.rglob("*")):
                    if path.name in ("final.pt", "log.csv", "config.yaml", "config.source.yaml") or \
                            path.suffix == ".out":
                        tar.add(path, arcname=str(path.relative_to(args.out)))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
