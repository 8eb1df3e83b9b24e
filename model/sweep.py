"""Many trainings and protocol units at once: ``m3 sweep``, as Ray tasks on a cluster or one by one here.

A job is one ``m3 train --config C --out OUT/NAME --arch A --seed S`` or one ``m3 protocol --config C --out
OUT/NAME --unit U --no-report`` (NAME: the configuration's file name without ``.yaml``). Jobs are written as

- ``CONFIG``: every model and seed of the configuration (its ``models`` and ``train.seeds``);
- ``CONFIG:ARCH[,ARCH...]:SEED[,SEED...]``: every ARCH x SEED;
- ``protocol:CONFIG:UNIT[,UNIT...]`` or ``protocol:CONFIG:all``: units of the evaluation protocol (cv-0,
  loso-UT, unsurveyed; docs/evaluation.md), afterwards ``m3 evaluate --run OUT/NAME`` writes the report.

Results land in the run folders exactly as the single commands write them, and a sweep resumes: a finished job
(``final.pt``, a unit's ``fold.json``) is skipped and an unfinished one continues from its last checkpoint. On Ray
each job is a task with ``cpus`` CPUs and ``gpus`` of a GPU (0.25: four trainings share one device), retried on
another node if its node is lost; the cube and run folders must be on a path every node reads.
"""

from __future__ import annotations

import csv
import logging
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from model.config import ExperimentConfig

log = logging.getLogger(__name__)

#: A job whose node or process is lost is run again this many times (it resumes from its checkpoint).
MAX_RETRIES = 3
#: The files ``--pack`` keeps of a run folder (with every ``.out`` and ``.npz``).
PACKED = ("final.pt", "log.csv", "config.yaml", "config.source.yaml", "fold.json", "folds.json", "config.sha256")


class SweepError(ValueError):
    """A job list that names something the configuration does not have."""


@dataclass(frozen=True)
class Job:
    """One training (``arch``, ``seed``) or one protocol unit (``unit``) of one configuration."""

    config: Path
    run: Path
    arch: str = ""
    seed: int = 0
    unit: str = ""
    #: Jobs of the list that must finish first: a gated model's experts (its own training would train them too).
    after: tuple[Job, ...] = ()

    @property
    def label(self) -> str:
        """How the job is named in the progress lines."""
        return f"{self.run.name} {self.unit}" if self.unit else f"{self.run.name} {self.arch} seed {self.seed}"

    @property
    def out_file(self) -> Path:
        """The job's log."""
        return self.run / (f"protocol-{self.unit}.out" if self.unit else f"train-{self.arch}-{self.seed}.out")

    @property
    def folder(self) -> Path:
        """The job's own folder in the run."""
        return self.run / "protocol" / self.unit if self.unit else self.run / self.arch / f"seed-{self.seed}"

    def finished(self) -> bool:
        """Whether the job's result is there (a trained model's final.pt, a unit's fold.json)."""
        return (self.folder / ("fold.json" if self.unit else "final.pt")).exists()

    def steps_done(self) -> int:
        """Training steps logged so far (a protocol unit: over all the networks it trains)."""
        logs = self.folder.glob("*/seed-*/log.csv") if self.unit else [self.folder / "log.csv"]
        return sum(_last_step(path) for path in logs)


@dataclass(frozen=True)
class JobResult:
    """What became of a job: ``done``, ``skipped`` (finished before), ``failed`` or ``stopped``."""

    job: Job
    status: str
    seconds: float = 0.0
    error: str = ""


def _last_step(log_path: Path) -> int:
    """The last step of one training log (0 before its first row)."""
    if not log_path.exists():
        return 0
    with log_path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return int(float(rows[-1][0])) if len(rows) > 1 else 0


def parse_jobs(specs: list[str], out: Path, base: Path) -> tuple[list[Job], dict[Path, ExperimentConfig]]:
    """Every job of the job specs, in order, with absolute paths; each configuration, read once.

    Models and protocol units a configuration does not have are refused (:class:`SweepError`).
    """
    from model.config import load_config

    jobs: list[Job] = []
    configs: dict[Path, ExperimentConfig] = {}
    out = out if out.is_absolute() else base / out

    def config(name: str) -> tuple[Path, ExperimentConfig]:
        """A configuration by its file name (relative to ``base``), read once."""
        path = Path(name) if Path(name).is_absolute() else base / name
        if not path.is_file():
            raise SweepError(f"{name} is not a file")
        configs[path] = configs.get(path) or load_config(path)
        return path, configs[path]

    for spec in specs:
        parts = spec.split(":")
        if parts[0] == "protocol" and len(parts) == 3:
            path, cfg = config(parts[1])
            jobs += [Job(path, out / path.stem, unit=u) for u in _protocol_units(cfg, parts[2], base)]
        elif len(parts) in (1, 3):
            path, cfg = config(parts[0])
            archs = parts[1].split(",") if len(parts) == 3 else list(cfg.models)
            seeds = [int(s) for s in parts[2].split(",")] if len(parts) == 3 else list(cfg.train.seeds)
            unknown = [a for a in archs if a not in cfg.models]
            if unknown:
                raise SweepError(f"{unknown[0]!r} is not a model of {parts[0]}; configured: {', '.join(cfg.models)}")
            jobs += [Job(path, out / path.stem, arch=a, seed=s) for a in archs for s in seeds]
        else:
            raise SweepError(f"job spec {spec!r} is neither CONFIG, CONFIG:ARCH[,ARCH]:SEED[,SEED] nor "
                             "protocol:CONFIG:UNIT[,UNIT]")
    return _ordered(list(dict.fromkeys(jobs)), configs), configs


def _ordered(jobs: list[Job], configs: dict[Path, ExperimentConfig]) -> list[Job]:
    """The jobs, each gated model after its experts where those are jobs too (they would share their folders)."""
    from model.config import GATED

    first, then = [], []
    for job in jobs:
        spec = configs[job.config].models.get(job.arch) if job.arch else None
        if spec is None or spec.arch != GATED:
            first.append(job)
            continue
        experts = tuple(j for j in jobs if j.config == job.config and j.seed == job.seed and j.arch in spec.experts)
        then.append(Job(job.config, job.run, job.arch, job.seed, after=experts))
    return first + then


def _protocol_units(cfg: ExperimentConfig, spec: str, base: Path) -> list[str]:
    """The protocol units of a job spec (``all``: every unit), checked against the configuration."""
    import json

    from model.protocol import protocol_units

    if cfg.protocol is None:
        raise SweepError(f"{cfg.name} has no protocol section")
    manifest = _cube_dir(cfg, base) / "cube.json"
    if not manifest.exists():
        raise SweepError(f"{manifest} not found; build the cube first (m3 cube build)")
    meta = json.loads(manifest.read_text(encoding="utf-8"))
    known = protocol_units(cfg, list(meta.get("coverage_rule", {}).get("covered_states", [])))
    units = known if spec == "all" else spec.split(",")
    unknown = [u for u in units if u not in known]
    if unknown:
        raise SweepError(f"unit(s) {', '.join(unknown)} not in {cfg.name}'s protocol: {', '.join(known)}")
    return units


def _cube_dir(cfg: ExperimentConfig, base: Path) -> Path:
    """The configuration's cube folder (``data.cube``, relative to ``base`` unless absolute)."""
    return Path(cfg.data.cube) if Path(cfg.data.cube).is_absolute() else base / cfg.data.cube


def record_configs(configs: dict[Path, ExperimentConfig], jobs: list[Job]) -> None:
    """Write each run folder's config.yaml once, before the jobs race for it."""
    from model.config import record_config

    for job in jobs:
        if not (job.run / "config.yaml").exists():
            record_config(configs[job.config], job.config, job.run)


@contextmanager
def _job_log(path: Path) -> Iterator[None]:
    """Send this process's log records to the job's log file (appended: a resumed job keeps its history)."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(min(level, logging.INFO) if level else logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


def run_job(job: Job, base: Path, *after: JobResult) -> JobResult:
    """Run one job in this process, as ``m3 train`` or ``m3 protocol --unit`` would (resuming; skipped if done).

    ``after``: the results of the jobs it waited for (on Ray, their tasks' results are passed in).
    """
    if job.finished():
        return JobResult(job, "skipped")
    import torch

    from model.config import load_config

    started = time.perf_counter()
    cfg = load_config(job.config)
    with _job_log(job.out_file):
        if job.unit:
            from model.cube_data import load_cube
            from model.protocol import run_protocol

            torch.set_num_threads(cfg.train.threads)
            cube = load_cube(_cube_dir(cfg, base), list(cfg.data.species) if cfg.data.species else None, None)
            run_protocol(cfg, cube, job.run, progress=False, units=(job.unit,))
        else:
            from model.train import open_experiment, train_model

            train_model(open_experiment(cfg, base=base), job.arch, job.seed, job.run, progress=False)
    return JobResult(job, "done", time.perf_counter() - started)


def run_here(jobs: list[Job], base: Path, report: Callable[[JobResult], None]) -> list[JobResult]:
    """Run the jobs one by one in this process, in order."""
    results = []
    for job in jobs:
        try:
            result = run_job(job, base)
        except Exception as exc:  # a job's failure is reported with the others, not the end of the sweep
            result = JobResult(job, "failed", error=f"{type(exc).__name__}: {exc}")
        results.append(result)
        report(result)
    return results


def run_on_ray(jobs: list[Job], base: Path, address: str, report: Callable[[JobResult], None], cpus: float = 1.0,
               gpus: float | None = None, deadline: float = 0.0) -> list[JobResult]:
    """Run the jobs as Ray tasks (``address``: a cluster, ``auto``, or ``local`` for one started here).

    ``gpus`` per job defaults to 0.25 where the cluster has GPUs, else 0. Each task runs in a fresh worker
    process (``max_calls=1``: a training's memory and device go back when it ends) and is retried on another
    node if its own is lost. After ``deadline`` seconds (0: none) the jobs still running are stopped; their
    checkpoints stay, and the next sweep resumes them.
    """
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=None if address == "local" else address, logging_level=logging.WARNING)
    try:
        if gpus is None:
            gpus = 0.25 if ray.cluster_resources().get("GPU", 0) else 0.0
        task = ray.remote(max_calls=1)(run_job).options(num_cpus=cpus, num_gpus=gpus, max_retries=MAX_RETRIES,
                                                        retry_exceptions=False)
        log.info("sweep on Ray: %d jobs, %s CPU and %s GPU each; cluster %s", len(jobs), cpus, gpus,
                 ray.cluster_resources())
        refs: dict[Job, Any] = {}
        for job in jobs:  # a job with ``after`` starts once those jobs have ended (they come first in the list)
            refs[job] = task.remote(job, base, *(refs[j] for j in job.after))
        pending = {ref: job for job, ref in refs.items()}
        return _collect(ray, pending, report, time.monotonic() + deadline if deadline else None)
    finally:
        if started_here:
            ray.shutdown()


def _collect(ray: Any, pending: dict[Any, Job], report: Callable[[JobResult], None],
             stop_at: float | None) -> list[JobResult]:
    """Wait for the tasks; stop those still running at ``stop_at``."""
    from ray.exceptions import RayError

    results: list[JobResult] = []
    while pending:
        timeout = None if stop_at is None else max(0.0, stop_at - time.monotonic())
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=timeout)
        if not ready:
            log.warning("deadline: stopping %d jobs", len(pending))
            for ref, job in pending.items():
                ray.cancel(ref, force=True)
                results.append(JobResult(job, "stopped"))
                report(results[-1])
            break
        job = pending.pop(ready[0])
        try:
            result = ray.get(ready[0])
        except RayError as exc:
            result = JobResult(job, "failed", error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
        results.append(result)
        report(result)
    return results


def pack_runs(jobs: list[Job], out: Path, dest: Path) -> list[Path]:
    """One tar per run folder in ``dest``: its checkpoints, logs, records and scores (names relative to ``out``)."""
    dest.mkdir(parents=True, exist_ok=True)
    tars = []
    for run in sorted({j.run for j in jobs}):
        with tarfile.open(dest / f"{run.name}.tar", "w") as tar:
            for path in sorted(run.rglob("*")):
                if path.is_file() and (path.name in PACKED or path.suffix in (".out", ".npz")):
                    tar.add(path, arcname=str(path.relative_to(out)))
        tars.append(dest / f"{run.name}.tar")
    return tars
