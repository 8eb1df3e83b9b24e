import os
import subprocess
import sys

from typer.testing import CliRunner

from backend.cli import app


def test_help_lists_commands():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for word in ("db", "ingest", "serve"):
        assert word in result.output


def test_ingest_missing_file_is_an_error_in_words(tmp_path):
    result = CliRunner().invoke(app, ["ingest", "minmod", str(tmp_path / "nope.tar.xz")])
    assert result.exit_code == 1
    assert "does not exist" in result.output


def test_cli_ingest_mrds_end_to_end(scratch_db_url):
    from pathlib import Path

    fixture = Path(__file__).parent / "fixtures" / "mrds_sample.csv"
    env = {**os.environ, "M3_DATABASE_URL": scratch_db_url}
    subprocess.run([sys.executable, "-m", "backend.cli", "db", "start"], env=env, check=True, capture_output=True)
    out = subprocess.run([sys.executable, "-m", "backend.cli", "ingest", "mrds", str(fixture)], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "rejected line 5 dep_id 10004: no latitude" in out.stdout
    assert "total: read 6" in out.stdout
