"""The ``m3`` command-line tool."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from tqdm import tqdm

from backend.cube.cli import cube_app
from backend.logs import configure_logging
from backend.settings import Settings
from model.cli import model_app

app = typer.Typer(help="M3 prospectivity service: site store, data cube, model, inference, web map.",
                  no_args_is_help=True)
db_app = typer.Typer(help="The PostGIS database (a project-local cluster unless M3_DATABASE_URL is set).",
                     no_args_is_help=True)
ingest_app = typer.Typer(help="Load mineral-site records into the store.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(ingest_app, name="ingest")
app.add_typer(cube_app, name="cube")
app.add_typer(model_app)  # m3 train | evaluate | export (torch is imported inside those commands only)

log = logging.getLogger("m3")


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:
    """Configure logging once for every command."""
    configure_logging("DEBUG" if verbose else Settings().log_level)


def _fail(message: str) -> None:
    """Print an error in words and exit with status 1."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


# -- database ---------------------------------------------------------------------------------------
@db_app.command("start")
def db_start() -> None:
    """Start the local PostGIS cluster (or check M3_DATABASE_URL's server) and create PostGIS."""
    from backend.db.cluster import ClusterError, LocalCluster

    settings = Settings()
    if settings.database_url:
        _ensure_external(settings.database_url)
        typer.echo("using M3_DATABASE_URL; PostGIS is ready")
        return
    cluster = LocalCluster.from_settings(settings)
    try:
        port = cluster.start()
    except ClusterError as exc:
        _fail(str(exc))
        return
    typer.echo(f"PostGIS running on 127.0.0.1:{port} (data in {cluster.data_dir}); URL {cluster.url()}")


def _ensure_external(url: str) -> None:
    """Connect to an external server and create the PostGIS extension there."""
    import sqlalchemy as sa

    from backend.db.engine import normalise_url

    engine = sa.create_engine(normalise_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS postgis")
    except sa.exc.SQLAlchemyError as exc:
        _fail(f"cannot prepare the database at M3_DATABASE_URL: {exc.__class__.__name__}: {exc}")
    finally:
        engine.dispose()


@db_app.command("stop")
def db_stop() -> None:
    """Stop the local cluster."""
    from backend.db.cluster import LocalCluster

    settings = Settings()
    if settings.database_url:
        _fail("M3_DATABASE_URL is set: that server is not ours to stop")
    stopped = LocalCluster.from_settings(settings).stop()
    typer.echo("stopped" if stopped else "the local cluster was not running")


@db_app.command("status")
def db_status() -> None:
    """Say where the database is and whether it answers, with the schema revision."""
    import sqlalchemy as sa

    from backend.db.engine import get_engine

    settings = Settings()
    url = settings.resolved_database_url()
    engine = get_engine(settings)
    try:
        with engine.connect() as conn:
            version = conn.exec_driver_sql("SELECT postgis_full_version()").scalar_one().split(" ")[0:2]
            has_version = conn.exec_driver_sql("SELECT to_regclass('alembic_version')").scalar()
            revision = None
            if has_version:
                revision = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
            sites = conn.exec_driver_sql("SELECT count(*) FROM sites").scalar() if revision else None
    except sa.exc.SQLAlchemyError as exc:
        _fail(f"database at {url} does not answer: {exc.__class__.__name__}; start it with `m3 db start`")
        return
    finally:
        engine.dispose()
    typer.echo(f"database: {url}\npostgis: {' '.join(version)}")
    typer.echo(f"schema revision: {revision or 'none (run m3 db upgrade)'}")
    if sites is not None:
        typer.echo(f"sites: {sites}")


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Migrate the schema (Alembic)."""
    from backend.db.migrate import upgrade

    upgrade(Settings().resolved_database_url(), revision)
    typer.echo(f"schema at {revision}")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="Target revision, e.g. base.")]) -> None:
    """Migrate the schema down (Alembic)."""
    from backend.db.migrate import downgrade

    downgrade(Settings().resolved_database_url(), revision)
    typer.echo(f"schema at {revision}")


# -- ingestion --------------------------------------------------------------------------------------
def _report(reports: list) -> None:
    """Print a table of file reports and each rejected record with its reason."""
    total = {"read": 0, "inserted": 0, "updated": 0, "unchanged": 0, "outside": 0, "rejected": 0}
    for r in reports:
        typer.echo(
            f"{r.name}: {r.status}; read {r.n_read}, inserted {r.inserted}, updated {r.updated}, "
            f"unchanged {r.unchanged}, outside the US {r.outside_us}, rejected {len(r.rejects)}"
        )
        for rej in r.rejects[:20]:
            typer.echo(f"  rejected {rej.record}: {rej.reason}")
        if len(r.rejects) > 20:
            typer.echo(f"  ... and {len(r.rejects) - 20} more (all listed in ingest_runs id {r.run_id})")
        for key, value in zip(total, (r.n_read, r.inserted, r.updated, r.unchanged, r.outside_us, len(r.rejects)),
                              strict=True):
            total[key] += value
    typer.echo("total: " + ", ".join(f"{k} {v}" for k, v in total.items()))


def _engine():
    """Engine for the CLI's settings."""
    from backend.db.engine import get_engine

    return get_engine(Settings())


@ingest_app.command("minmod")
def ingest_minmod_cmd(
    paths: Annotated[list[Path], typer.Argument(help="MinMod .tar.xz archives, .json batches or folders.")],
) -> None:
    """Ingest MinMod mineral-site JSON (each file in one transaction)."""
    from backend.ingest.service import ingest_minmod

    for p in paths:
        if not p.exists():
            _fail(f"{p} does not exist")
    reports = []
    engine = _engine()
    try:
        for report in tqdm(ingest_minmod(engine, paths), desc="ingest", unit="file", disable=None):
            reports.append(report)
    except ValueError as exc:
        _fail(str(exc))
    except Exception as exc:  # noqa: BLE001
        _report(reports)
        _fail(f"stopped: {exc.__class__.__name__}: {exc}; files before it were committed, that file was rolled back")
    _report(reports)


@ingest_app.command("mrds")
def ingest_mrds_cmd(path: Annotated[Path, typer.Argument(help="A USGS mrds.csv file.")]) -> None:
    """Ingest a USGS MRDS CSV file (mrds.csv layout)."""
    from backend.ingest.service import ingest_mrds

    if not path.is_file():
        _fail(f"{path} is not a file")
    try:
        _report([ingest_mrds(_engine(), path)])
    except ValueError as exc:
        _fail(str(exc))


@ingest_app.command("geojson")
def ingest_geojson_cmd(path: Annotated[Path, typer.Argument(help="A GeoJSON FeatureCollection of points.")]) -> None:
    """Ingest a GeoJSON FeatureCollection (properties: record_id, name, commodities, source, ...)."""
    from backend.ingest.service import ingest_geojson

    if not path.is_file():
        _fail(f"{path} is not a file")
    try:
        _report([ingest_geojson(_engine(), path)])
    except ValueError as exc:
        _fail(str(exc))


# -- inference --------------------------------------------------------------------------------------
@app.command("infer")
def infer(
    model_dir: Annotated[Path | None, typer.Option(help="Folder with model.json (default M3_MODEL_DIR).")] = None,
    cube_dir: Annotated[Path | None, typer.Option(help="Cube folder (default M3_CUBE_DIR).")] = None,
    layers_dir: Annotated[Path | None, typer.Option(help="Where v<N>/ folders go (default M3_LAYERS_DIR).")] = None,
    masks: Annotated[int | None, typer.Option(min=1, help=(
        "E, mask rounds: every cell-species is hidden in exactly E evaluations (default M3_ENSEMBLE_MASKS, 8; "
        "the paper's setting is 50)."))] = None,
    mask_seed: Annotated[int | None, typer.Option(help=(
        "Seed of the mask draw: the same seed gives the same layers, another seed another draw "
        "(default M3_ENSEMBLE_SEED, 0)."))] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    ray: Annotated[str | None, typer.Option(help=(
        "Evaluate on a Ray cluster: address, 'auto' or 'local' (scale extra; cube, model on a shared path)."))] = None,
    ray_actors: Annotated[int | None, typer.Option(min=1, help="Evaluators (default: 1 per GPU, else CPU).")] = None,
    ray_cpus: Annotated[float, typer.Option(min=0.01, help="CPUs of each evaluator on the cluster.")] = 1.0,
) -> None:
    """Run the whole-map ensemble, write layers/v<N>/ and clusters, and publish them (as a recorded job)."""
    import os

    from backend.inference.contract import ModelContractError
    from backend.inference.cube_inputs import CubeMissingError
    from backend.inference.jobs import JobConflict, finish_job, start_job, update_job
    from backend.inference.reinference import job_progress, run_reinference

    given: dict[str, object] = {"model_dir": model_dir, "cube_dir": cube_dir, "layers_dir": layers_dir,
                                "ensemble_masks": masks, "ensemble_seed": mask_seed}
    overrides = {k: v for k, v in given.items() if v is not None}
    settings = Settings().model_copy(update=overrides)
    runner = _ensemble_runner(settings, ray, ray_actors, ray_cpus)
    engine = _engine()

    try:
        args = {"cli": True, "ray": ray, **{k: str(v) for k, v in overrides.items()}}
        job_id = start_job(engine, "reinference", args, pid=os.getpid())
    except JobConflict as exc:
        _fail(str(exc))
        return
    store = job_progress(engine, job_id)
    bar = tqdm(total=100, desc="infer", unit="%", disable=None if progress else True)

    def report(fraction: float, message: str) -> None:
        """Move the bar and store the progress in the job row."""
        bar.n = round(100 * fraction)
        bar.set_postfix_str(message, refresh=True)
        store(fraction, message)

    try:
        update_job(engine, job_id, message="loading the model")
        version = run_reinference(settings, engine, job_id, report, runner=runner)
    except (ModelContractError, CubeMissingError) as exc:
        finish_job(engine, job_id, ok=False, message="failed", error=str(exc))
        _fail(str(exc))
        return
    except BaseException as exc:
        finish_job(engine, job_id, ok=False, message="failed", error=f"{exc.__class__.__name__}: {exc}")
        raise
    finally:
        bar.close()
    finish_job(engine, job_id, ok=True, message=f"published layer version {version}")
    engine.dispose()
    typer.echo(f"job {job_id}: published layer version {version} in {settings.layers_dir / f'v{version}'}")


def _ensemble_runner(settings: Settings, ray: str | None, actors: int | None, cpus: float):  # noqa: ANN202
    """The ensemble's runner: None (run_reinference's own, in this process), or a :class:`RayEnsemble` on a cluster."""
    if ray is None:
        return None
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        _fail("--ray needs Ray, which is not installed: pip install -e '.[scale]'")
    from backend.inference.ray_ensemble import RayEnsemble

    return RayEnsemble(settings, ray, actors=actors, cpus_per_actor=cpus)


@app.command("clusters")
def clusters_cmd(
    top: Annotated[int, typer.Option(help="How many clusters.")] = 5,
    species: Annotated[str | None, typer.Option(help="Only this species.")] = None,
) -> None:
    """Print the top flagged clusters of the served layers as a Markdown table (see `GET /api/clusters`)."""
    from backend.layers.clusters import top_clusters

    rows = top_clusters(_engine(), top, species)
    if not rows:
        _fail("no flagged clusters: publish layers first with `m3 infer`")
    typer.echo("| species (rank) | place | score | mean / max probability | area km2 | nearest known site of the "
               "species | known sites inside |")
    typer.echo("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        near = r["nearest_site"]
        nearest = (f"{near['name'] or near['id']} ({r['nearest_distance_m'] / 1000:.1f} km)" if near
                   else "none known")
        inside = "; ".join(f"{s['name'] or s['id']} ({', '.join((s['commodities'] or s['species'])[:3])})"
                           for s in r["sites"][:3])
        more = f" and {r['n_sites'] - 3} more" if r["n_sites"] > 3 else ""
        typer.echo(f"| {r['species']} ({r['rank']}) | {r['state']} ({r['lon']:.3f}, {r['lat']:.3f}) | "
                   f"{r['score']:.2f} | {r['mean_score']:.2f} / {r['max_score']:.2f} | {r['area_km2']:.0f} | "
                   f"{nearest} | {inside or 'none'}{more} |")


# -- serving ----------------------------------------------------------------------------------------
@app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default M3_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default M3_PORT).")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
) -> None:
    """Serve the API and the map with uvicorn (refused, in one line, when the settings are unsafe to serve with)."""
    import uvicorn

    settings = Settings()
    try:
        settings.check_production()
    except ValueError as exc:
        _fail(str(exc))
    uvicorn.run(
        "backend.api.app:create_app", factory=True, host=host or settings.host, port=port or settings.port,
        workers=workers, log_level=settings.log_level.lower(),
    )


if __name__ == "__main__":
    app()
