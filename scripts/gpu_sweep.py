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

A job spec is ``CONFIG:ARCH[,ARCH...]:SEED[,SEED...]``; every ARCH x SEED is a job. The evaluation
protocol (docs/evaluation.md) runs the same way, one job per unit of work (a fold, a held-out state):
``protocol:CONFIG:UNIT[,UNIT...]`` runs ``m3 protocol --config C --out OUT/NAME --unit U --no-report``,
``protocol:CONFIG:all`` every unit of the configuration; afterwards ``m3 evaluate --run OUT/NAME`` writes the
report (``--pack`` then also keeps the units' scores):
    python3 scripts/gpu_sweep.py --out runs/sweep --parallel 13 protocol:configs/demo.yaml:all
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from model.config import ExperimentConfig

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class Job:
    """One process: a training (``arch``, ``seed``) or a protocol unit (``unit``) of one configuration."""

    config: Path
    run: Path
    arch: str = ""
    seed: int = 0
    unit: str = ""

    @property
    def label(self) -> str:
        """How the job is named in the progress lines."""
        return f"{self.run.name} {self.unit}" if self.unit else f"{self.run.name} {self.arch} seed {self.seed}"

    @property
    def out_file(self) -> Path:
        """The job's stdout and stderr."""
        return self.run / (f"protocol-{self.unit}.out" if self.unit else f"train-{self.arch}-{self.seed}.out")

    def command(self) -> list[str]:
        """The m3 command line of the job."""
        if self.unit:
            return [sys.executable, "-m", "model.cli", "protocol", "--config", str(self.config), "--out",
                    str(self.run), "--unit", self.unit, "--no-report", "--no-progress"]
        return [sys.executable, "-m", "model.cli", "train", "--config", str(self.config), "--out", str(self.run),
                "--arch", self.arch, "--seed", str(self.seed), "--no-progress"]

    def steps_done(self) -> int:
        """Training steps logged so far (a protocol unit: over all the networks it trains)."""
        folder = self.run / "protocol" / self.unit if self.unit else self.run / self.arch / f"seed-{self.seed}"
        logs = folder.glob("*/seed-*/log.csv") if self.unit else [folder / "log.csv"]
        return sum(_last_step(path) for path in logs)


def _last_step(log_path: Path) -> int:
    """The last step of one training log (0 before its first row)."""
    if not log_path.exists():
        return 0
    with log_path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return int(float(rows[-1][0])) if len(rows) > 1 else 0


def parse_jobs(specs: list[str], out: Path) -> tuple[list[Job], dict[Path, ExperimentConfig]]:
    """Every job of the job specs, in order; each configuration, read once.

    Models a configuration does not have, and protocol units it does not have, are refused.
    """
    from model.config import load_config

    jobs: list[Job] = []
    configs: dict[Path, ExperimentConfig] = {}
    for spec in specs:
        parts = spec.split(":")
        if parts[0] == "protocol" and len(parts) == 3:
            path = Path(parts[1])
            cfg = configs[path] = configs.get(path) or load_config(path)
            jobs += [Job(path, out / path.stem, unit=u) for u in _protocol_units(cfg, parts[2])]
            continue
        if len(parts) != 3:
            raise SystemExit(f"error: job spec {spec!r} is neither CONFIG:ARCH[,ARCH]:SEED[,SEED] nor "
                             "protocol:CONFIG:UNIT[,UNIT]")
        config, archs, seeds = parts
        path = Path(config)
        cfg = configs[path] = configs.get(path) or load_config(path)
        for arch in archs.split(","):
            if arch not in cfg.models:
                raise SystemExit(f"error: {arch!r} is not a model of {config}; configured: {', '.join(cfg.models)}")
            for seed in seeds.split(","):
                jobs.append(Job(path, out / path.stem, arch=arch, seed=int(seed)))
    return jobs, configs


def _protocol_units(cfg: ExperimentConfig, spec: str) -> list[str]:
    """The protocol units of a job spec (``all``: every unit), checked against the configuration."""
    import json

    from model.protocol import protocol_units

    if cfg.protocol is None:
        raise SystemExit(f"error: {cfg.name} has no protocol section")
    manifest = ROOT / cfg.data.cube / "cube.json"  # an absolute data.cube stays itself
    if not manifest.exists():
        raise SystemExit(f"error: {manifest} not found; build the cube first (m3 cube build)")
    meta = json.loads(manifest.read_text(encoding="utf-8"))
    known = protocol_units(cfg, list(meta.get("coverage_rule", {}).get("covered_states", [])))
    units = known if spec == "all" else spec.split(",")
    unknown = [u for u in units if u not in known]
    if unknown:
        raise SystemExit(f"error: unit(s) {', '.join(unknown)} not in {cfg.name}'s protocol: {', '.join(known)}")
    return units


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
    resumed = sum(j.steps_done() for j in jobs)  # steps of an earlier call, not counted in the rate
    print(f"{len(jobs)} jobs, {args.parallel} at a time", flush=True)
    while waiting or running:
        while waiting and len(running) < args.parallel:
            job = waiting.pop(0)
            log_file = job.out_file.open("w", encoding="utf-8")
            running[job] = (subprocess.Popen(job.command(), cwd=ROOT, env=env, stdout=log_file,
                                             stderr=subprocess.STDOUT), log_file)
        time.sleep(2)
        for job, (proc, job_out) in list(running.items()):
            if proc.poll() is not None:
                job_out.close()
                del running[job]
                finished.append((job, proc.returncode))
                print(f"{time.monotonic() - started:6.0f} s  done {job.label} (exit {proc.returncode})", flush=True)
        now = time.monotonic()
        if now - last_report >= 30:
            last_report = now
            done = sum(j.steps_done() for j in jobs)
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
        print(f"not finished: {job.label} ({rc}); see {job.out_file}")
    if args.pack:
        args.pack.mkdir(parents=True, exist_ok=True)
        for run in sorted({j.run for j in jobs}):
            with tarfile.open(args.pack / f"{run.name}.tar", "w") as tar:
                for path in sorted(run.rglob("*")):
                    if path.name in ("final.pt", "log.csv", "config.yaml", "config.source.yaml", "fold.json",
                                     "folds.json", "config.sha256") or path.suffix in (".out", ".npz"):
                        tar.add(path, arcname=str(path.relative_to(args.out)))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
