"""The model commands, mounted by ``backend.cli`` as ``m3 train``, ``m3 evaluate`` and ``m3 export``.

Torch is imported inside the commands only, so importing this module (and ``backend.cli``) stays light.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

model_app = typer.Typer(help="Train, evaluate and export the masked-infilling model.", no_args_is_help=True)
log = logging.getLogger(__name__)


def _fail(message: str) -> None:
    """Print an error in words and exit with status 1."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@model_app.command("train")
def train(
    config: Annotated[Path, typer.Option(help="Experiment YAML, e.g. configs/demo.yaml.")],
    out: Annotated[Path, typer.Option(help="Run folder, e.g. runs/demo (resumes if it holds checkpoints).")],
    arch: Annotated[list[str] | None, typer.Option(help="Only these models (default: all in the config).")] = None,
    seed: Annotated[list[int] | None, typer.Option(help="Only these seeds (default: train.seeds).")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train every model and seed of a configuration (seeded, resumable, CSV log per model)."""
    from model.config import load_config, record_config
    from model.train import open_experiment, train_model

    if not config.is_file():
        _fail(f"{config} is not a file")
    try:
        cfg = load_config(config)
    except ValueError as exc:
        _fail(f"{config}: {exc}")
        return
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
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Score every trained model and the baselines on test blocks; write metrics.json, report.md, plots."""
    import torch

    from model.evaluate import evaluate_run
    from model.report import headline, write_evaluation

    exp = _open_run(run)
    torch.set_num_threads(exp.cfg.train.threads)
    metrics = evaluate_run(exp, run, progress=progress)
    metrics["run"] = str(run)
    metrics["config"] = exp.cfg.to_dict()
    metrics["cube"] = exp.cube.cube_sha256
    write_evaluation(metrics, run)
    for regime, h in headline(metrics).items():
        typer.echo(f"{regime}: UNet test Dice {h['dice']['mean']:.3f} ± {h['dice']['std']:.3f}, "
                   f"AUPRC {h['auprc']['mean']:.3f} ± {h['auprc']['std']:.3f}")
    typer.echo(f"wrote {run / 'metrics.json'} and {run / 'report.md'}")


@model_app.command("export")
def export(run: Annotated[Path, typer.Option(help="Run folder written by m3 train.")]) -> None:
    """Write model.onnx (raw inputs -> sigmoid probabilities) and model.json into the run folder."""
    from model.export import export_run

    try:
        payload = export_run(_open_run(run), run)
    except FileNotFoundError as exc:
        _fail(str(exc))
        return
    typer.echo(f"wrote {run / 'model.onnx'} (sha256 {payload['sha256'][:12]}...) and {run / 'model.json'}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    model_app()
