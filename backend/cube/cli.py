"""`m3 cube ...`: build the CONUS data cube from the site store and the covariates."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

log = logging.getLogger(__name__)

cube_app = typer.Typer(
    help="The CONUS data cube: labels, coverage and covariates on the 1-mile grid.", no_args_is_help=True
)


@cube_app.command("build")
def build(
    species: Annotated[
        list[str] | None,
        typer.Option("--species", "-s", help="Target species id (repeatable); default: the M3 ten."),
    ] = None,
    covariate: Annotated[
        list[str] | None,
        typer.Option("--covariate", "-c", help="Extra covariate NAME=PATH.tif, any CRS (repeatable)."),
    ] = None,
    crossref: Annotated[
        list[str] | None,
        typer.Option(
            "--crossref",
            help="Cross-reference commodity id (repeatable); default: sand_and_gravel, "
            "clay, stone, limestone, ... where present.",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("cube"),
    quicklook: Annotated[bool, typer.Option(help="Write quick-look PNGs under OUT/quicklook/.")] = True,
    derived_covariates: Annotated[
        bool | None,
        typer.Option(
            "--derived-covariates/--no-derived-covariates",
            help="Add the derived covariates (Bouguer anomaly, its residuals and gradient, multi-scale slope and "
            "roughness); default: the M3_CUBE_DERIVED_COVARIATES setting (on).",
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Build the cube from the sites in PostGIS and write it under OUT."""
    from backend.cube.build import build_cube
    from backend.cube.labels import UnknownSpeciesError
    from backend.cube.sources import CovariateError
    from backend.db.engine import get_engine
    from backend.settings import get_settings

    settings = get_settings()
    engine = get_engine(settings)
    try:
        manifest = build_cube(
            settings,
            engine,
            out,
            species=species or None,
            covariates=covariate or (),
            crossref=crossref or None,
            progress=progress,
            quicklooks=quicklook,
            derived=derived_covariates,
        )
    except (UnknownSpeciesError, CovariateError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    finally:
        engine.dispose()
    typer.echo(f"cube written: {manifest}")
