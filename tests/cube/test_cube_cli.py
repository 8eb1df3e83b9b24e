"""The `cube build` command: options and error messages (the database is faked)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from backend.cube import build as build_module
from backend.cube.cli import cube_app
from backend.cube.sites import SiteTable


def _invoke(*args: str) -> tuple[int, str]:
    """Run `m3 cube ...` as the main CLI will mount it; output with the box drawing removed."""
    app = typer.Typer()
    app.add_typer(cube_app, name="cube")
    result = CliRunner().invoke(app, ["cube", *args], env={"COLUMNS": "400"})
    text = " ".join(result.output.replace("│", " ").split())
    return result.exit_code, text


@pytest.fixture()
def fake_store(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Replace the engine and the site read by fakes; record what build_cube was asked for."""
    calls: list[dict] = []

    class _Engine:
        def dispose(self) -> None:
            pass

    engine_module = types.ModuleType("backend.db.engine")
    engine_module.get_engine = lambda settings: _Engine()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "backend.db.engine", engine_module)
    sites = SiteTable.from_records([-121.0], [38.0], [("gold",)])

    def fake_build(settings, engine, out, **kwargs):  # noqa: ANN001, ANN003, ANN202
        calls.append({"out": out, **kwargs})
        build_module.resolve_request(sites, kwargs["species"], kwargs["covariates"], kwargs["crossref"])
        return out / "cube.json"

    monkeypatch.setattr(build_module, "build_cube", fake_build)
    return calls


def test_help_lists_the_options() -> None:
    code, text = _invoke("build", "--help")
    assert code == 0
    for option in ("--species", "--covariate", "--out", "--crossref", "--no-quicklook"):
        assert option in text


def test_build_passes_options(fake_store: list[dict], tmp_path: Path) -> None:
    code, text = _invoke("build", "--species", "gold", "--out", str(tmp_path), "--no-quicklook")
    assert code == 0, text
    assert fake_store[0]["species"] == ["gold"] and fake_store[0]["quicklooks"] is False
    assert "cube written" in text


def test_unknown_species_is_a_usage_error(fake_store: list[dict], tmp_path: Path) -> None:
    code, text = _invoke("build", "--species", "gld", "--out", str(tmp_path))
    assert code == 2
    assert "'gld' is unknown" in text


def test_bad_covariate_option_is_a_usage_error(fake_store: list[dict], tmp_path: Path) -> None:
    code, text = _invoke("build", "--species", "gold", "--covariate", "nope.tif")
    assert code == 2
    assert "NAME=PATH" in text


def test_derived_covariates_option_defaults_to_the_setting(fake_store: list[dict], tmp_path: Path) -> None:
    code, text = _invoke("build", "--species", "gold", "--out", str(tmp_path), "--derived-covariates")
    assert code == 0, text
    code, text = _invoke("build", "--species", "gold", "--out", str(tmp_path))
    assert code == 0, text
    assert fake_store[0]["derived"] is True and fake_store[1]["derived"] is None  # None: M3_CUBE_DERIVED_COVARIATES
