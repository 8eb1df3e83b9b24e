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


def test_serve_with_a_short_admin_token_is_one_line_error(tmp_path):
    env = {**os.environ, "M3_ADMIN_TOKEN": "too-short-token", "M3_STATE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "backend.cli", "serve", "--port", "1"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr + out.stdout and "╭" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out.stderr
    assert "M3_ADMIN_TOKEN is 15 characters long" in errors[0] and "at least 32" in errors[0]
