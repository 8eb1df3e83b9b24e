"""The model commands, mounted by ``backend.cli`` as ``m3 train``, ``m3 evaluate`` and ``m3 export``.

Torch is imported inside the commands only, so importing this module (and ``backend.cli``) stays light.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

import typer

model_app = typer.Typer(help="Train, evaluate and export the masked-infilling model.", no_args_is_help=True)
log = logging.getLogger(__name__)


def _fail(message: str) -> None:
    """Print an error in words and exit with status 1."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def _read_config(config: Path):  # noqa: ANN202 (ExperimentConfig, imported lazily)
    """The experiment configuration at ``config``, or a one-line error and exit 1."""
    import yaml

    from model.config import load_config

    if not config.is_file():
        _fail(f"{config} is not a file")
    try:
        return load_config(config)
    except (ValueError, yaml.YAMLError) as exc:
        _fail(f"{config}: {exc}")
        raise  # not reached: _fail exits


@model_app.command("train")
def train(
    config: Annotated[Path, typer.Option(help="Experiment YAML, e.g. configs/demo.yaml.")],
    out: Annotated[Path, typer.Option(help="Run folder, e.g. runs/demo (resumes if it holds checkpoints).")],
    arch: Annotated[list[str] | None, typer.Option(help="Only these models (default: all in the config).")] = None,
    seed: Annotated[list[int] | None, typer.Option(help="Only these seeds (default: train.seeds).")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train every model and seed of a configuration (seeded, resumable, CSV log per model)."""
    from model.config import record_config
    from model.train import open_experiment, train_model

    cfg = _read_config(config)
    archs = arch or list(cfg.models)
    unknown = [a for a in archs if a not in cfg.models]
    if unknown:
        _fail(f"model(s) {unknown} not in {config}; configured: {', '.join(cfg.models)}")
    record_config(cfg, config, out)
    exp = open_experiment(cfg, base=Path.cwd())
    for a in archs:
        for s in seed or list(cfg.train.seeds):
            path = train_model(exp, a, s, out, progress=progress)
            typer.echo(f"{a} seed {s}: {path}")


def _open_run(run: Path):  # noqa: ANN202 (returns model.train.Experiment, imported lazily)
    """The experiment recorded in a run folder (its config.yaml), with the cube loaded."""
    from model.config import load_config
    from model.train import open_experiment

    config = run / "config.yaml"
    if not config.is_file():
        _fail(f"{config} not found; train first with `m3 train --config configs/NAME.yaml --out {run}`")
    return open_experiment(load_config(config), base=Path.cwd())


@model_app.command("evaluate")
def evaluate(
    run: Annotated[Path, typer.Option(help="Run folder written by m3 train.")],
    test: Annotated[bool, typer.Option("--test", help="Score the sealed test blocks (protocol runs; logged).")] = False,
    against: Annotated[Path | None, typer.Option(
        help="Another protocol run on the same folds: the report compares the two runs' ResNet-UNets.")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Score the run and write metrics.json, report.md and plots.

    With a protocol section: the report of `m3 protocol` (cross-validation, leave-one-state-out,
    unsurveyed states), and with --test the sealed test, each scoring logged in the run's test_log.csv.
    With --against, the exported model against another protocol run's, paired on the same folds.
    Without one: every trained model and the baselines on the run's validation and test blocks.
    """
    import torch

    from model.evaluate import evaluate_run
    from model.report import headline, write_evaluation

    exp = _open_run(run)
    torch.set_num_threads(exp.cfg.train.threads)
    if exp.cfg.protocol is not None:
        _protocol_report(run, exp.cfg, test, progress, against)
        return
    if against is not None:
        _fail(f"{run}: --against compares protocol runs; this run's configuration has no protocol section")
    if test:
        _fail(f"{run}: --test needs a protocol section in the run's configuration")
    metrics = evaluate_run(exp, run, progress=progress)
    metrics["run"] = str(run)
    metrics["config"] = exp.cfg.to_dict()
    metrics["cube"] = exp.cube.cube_sha256
    write_evaluation(metrics, run)
    for regime, h in headline(metrics).items():
        typer.echo(f"{regime}: UNet test Dice {h['dice']['mean']:.3f} ± {h['dice']['std']:.3f}, "
                   f"AUPRC {h['auprc']['mean']:.3f} ± {h['auprc']['std']:.3f}")
    typer.echo(f"wrote {run / 'metrics.json'} and {run / 'report.md'}")


def _protocol_cube(cfg):  # noqa: ANN001, ANN202 (ExperimentConfig -> CubeArrays, imported lazily)
    """The configured species of the cube with every covariate (the baselines read them all)."""
    from model.cube_data import load_cube

    cube_dir = Path(cfg.data.cube) if Path(cfg.data.cube).is_absolute() else Path.cwd() / cfg.data.cube
    return load_cube(cube_dir, list(cfg.data.species) if cfg.data.species else None, None)


def _protocol_report(run: Path, cfg, test: bool, progress: bool,  # noqa: ANN001 (ExperimentConfig)
                     against: Path | None = None) -> None:
    """Aggregate a protocol run's folds (and, with ``test``, score the sealed test); write the report."""
    from model.protocol import against_run, aggregate_protocol, score_test, test_scorings
    from model.report import write_protocol_report

    cube = _protocol_cube(cfg)
    results = aggregate_protocol(cfg, cube.species, run / "protocol")
    if against is not None:
        try:
            results["against"] = against_run(cfg, cube.species, run / "protocol", results, against)
        except (FileNotFoundError, ValueError) as exc:
            _fail(str(exc))
    if test:
        done = len(test_scorings(run))
        if done >= cfg.protocol.max_test_scorings:
            typer.secho(f"warning: the sealed test of {run} was already scored {done} times", fg=typer.colors.YELLOW,
                        err=True)
        results["test"] = score_test(cfg, cube, run, progress=progress)
    elif (run / "metrics.json").exists():  # keep the last scoring of the sealed test in the report
        import json

        previous = json.loads((run / "metrics.json").read_text(encoding="utf-8")).get("protocol", {})
        if "test" in previous:
            results["test"] = previous["test"]
    results["test_scorings"] = test_scorings(run)
    write_protocol_report(results, cfg, cube, run)
    fit = results.get("cv", {}).get("calibration_fit")
    if fit:
        from model.report import write_json_atomic

        unsurveyed = results.get("loso", {}).get("calibration_fit")
        write_json_atomic(dict(fit, unsurveyed=unsurveyed) if unsurveyed else fit, run / "calibration.json")
        typer.echo(f"wrote {run / 'calibration.json'} ({fit['method']}, fitted on {fit['folds']} folds)")
    typer.echo(f"wrote {run / 'metrics.json'} and {run / 'report.md'}")


@model_app.command("protocol")
def protocol(
    config: Annotated[Path, typer.Option(help="Experiment YAML with a protocol section (configs/protocol-*.yaml).")],
    out: Annotated[Path, typer.Option(help="Run folder; its folds go to OUT/protocol (a rerun resumes them).")],
    stage: Annotated[list[str] | None, typer.Option(help="Only these stages (cv, loso, unsurveyed).")] = None,
    unit: Annotated[list[str] | None, typer.Option(
        help="Only these units of work (cv-0, loso-UT, unsurveyed, ...), e.g. one per process.")] = None,
    report: Annotated[bool, typer.Option(help="Write report.md at the end (off for parallel units).")] = True,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Run the evaluation protocol: cross-validation folds, leave-one-state-out and the unsurveyed check.

    Every fold trains the configured networks and tunes the baselines on its own training cells; scores
    are saved as each fold finishes, so a stopped run resumes. Ends with the report (m3 evaluate).
    """
    import torch

    from model.config import PROTOCOL_STAGES, record_config
    from model.protocol import run_protocol

    cfg = _read_config(config)
    if cfg.protocol is None:
        _fail(f"{config} has no protocol section (see configs/protocol-quick.yaml)")
    bad = [s for s in stage or [] if s not in PROTOCOL_STAGES]
    if bad:
        _fail(f"stage(s) {bad} unknown; known: {', '.join(PROTOCOL_STAGES)}")
    record_config(cfg, config, out)
    torch.set_num_threads(cfg.train.threads)
    try:
        cube = _protocol_cube(cfg)
        run_protocol(cfg, cube, out, progress=progress, stages=tuple(stage) if stage else None,
                     units=tuple(unit) if unit else None)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    if report:
        _protocol_report(out, cfg, False, progress)


@model_app.command("export")
def export(run: Annotated[Path, typer.Option(help="Run folder written by m3 train.")],
           out: Annotated[Path | None, typer.Option(help=(
               "Folder to write the model to (default: the run folder), e.g. runs/demo, the served one."))] = None,
           ) -> None:
    """Write model.onnx (raw inputs -> sigmoid probabilities), the other members and model.json."""
    from model.export import export_run

    dest = out or run
    if dest.exists() and not dest.is_dir():
        _fail(f"--out {dest} is not a folder")
    try:
        payload = export_run(_open_run(run), run, out)
    except FileNotFoundError as exc:
        _fail(str(exc))
        return
    typer.echo(f"wrote {dest / 'model.onnx'} (sha256 {payload['sha256'][:12]}...), "
               f"{len(payload['members'])} member(s) and {dest / 'model.json'}")


@model_app.command("sweep")
def sweep(
    jobs: Annotated[list[str], typer.Argument(help=(
        "Jobs: CONFIG (every model and seed), CONFIG:ARCH[,ARCH]:SEED[,SEED], or protocol:CONFIG:UNIT[,UNIT] "
        "(protocol:CONFIG:all: every unit)."), show_default=False)],
    out: Annotated[Path, typer.Option(help="Parent of the run folders (OUT/NAME, NAME the config's file name).")] = (
        Path("runs")),
    ray: Annotated[str | None, typer.Option(help=(
        "Run the jobs as tasks on a Ray cluster: its address, 'auto', or 'local' (a cluster of this machine; "
        "the scale extra). Without it the jobs run one by one in this process."))] = None,
    cpus: Annotated[float, typer.Option(min=0.01, help="CPUs per job on Ray.")] = 1.0,
    gpus: Annotated[float | None, typer.Option(min=0.0, help=(
        "GPUs per job on Ray (0.25: four trainings share a device; default 0.25 where the cluster has GPUs)."))
    ] = None,
    deadline: Annotated[float, typer.Option(min=0.0, help="Stop the jobs still running after this many seconds "
                                                          "(0: none); their checkpoints stay, a rerun resumes.")] = 0.0,
    pack: Annotated[Path | None, typer.Option(help="Afterwards, one tar per run folder of its results here.")] = None,
) -> None:
    """Run many trainings and protocol units (resumable; results in the run folders as m3 train writes them)."""
    import importlib.util

    from model.sweep import SweepError, pack_runs, parse_jobs, record_configs, run_here, run_on_ray

    base = Path.cwd()
    try:
        todo, configs = parse_jobs(jobs, out, base)
    except (SweepError, ValueError) as exc:
        _fail(str(exc))
        return
    if ray is not None and importlib.util.find_spec("ray") is None:
        _fail("--ray needs Ray, which is not installed: pip install -e '.[scale]'")
    record_configs(configs, todo)
    started = time.monotonic()
    typer.echo(f"{len(todo)} jobs, {sum(j.finished() for j in todo)} finished before" + (f", on Ray ({ray})" if ray
                                                                                          else ", one by one"))

    def report(result) -> None:  # noqa: ANN001 (model.sweep.JobResult)
        """One line per job as it ends."""
        why = f": {result.error}" if result.error else ""
        typer.echo(f"{time.monotonic() - started:6.0f} s  {result.status} {result.job.label}{why}")

    results = (run_here(todo, base, report) if ray is None else
               run_on_ray(todo, base, ray, report, cpus=cpus, gpus=gpus, deadline=deadline))
    if pack is not None:
        for tar in pack_runs(todo, out if out.is_absolute() else base / out, pack):
            typer.echo(f"wrote {tar}")
    unfinished = [r for r in results if r.status not in ("done", "skipped")]
    for r in unfinished:
        typer.echo(f"not finished: {r.job.label} ({r.status}); see {r.job.out_file}")
    if unfinished:
        raise typer.Exit(1)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    model_app()
