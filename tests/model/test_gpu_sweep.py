"""scripts/gpu_sweep.py: `m3 sweep` on a Ray cluster of this machine (many jobs at once, a deadline, tars)."""

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_sweep.py"


def _config(tmp_path: Path, tiny_raw: dict, cube: Path, name: str, steps: int) -> Path:
    raw = dict(tiny_raw, data=dict(tiny_raw["data"], cube=str(cube)))
    raw["models"] = {"unet": dict(raw["models"]["unet"], steps=steps)}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _sweep(*args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"RAY_AUTH_MODE": "disabled"}  # a local cluster for a minute: no token written to ~/.ray
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.slow
def test_jobs_run_at_once_a_deadline_stops_the_long_one_and_runs_are_packed(tmp_path, tiny_cube_dir, tiny_raw):
    pytest.importorskip("ray", reason="--parallel runs on Ray (the scale extra)")
    quick = _config(tmp_path, tiny_raw, tiny_cube_dir, "quick", 3)
    long = _config(tmp_path, tiny_raw, tiny_cube_dir, "long", 100000)
    done = _sweep("--out", str(tmp_path / "runs"), "--parallel", "2", "--deadline", "25", "--pack",
                  str(tmp_path / "pack"), f"{long}:unet:0", f"{quick}:unet:0,1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "2 jobs at a time on this machine" in done.stdout and "3 jobs, 0 finished before, on Ray" in done.stdout
    assert "not finished: long unet seed 0 (stopped)" in done.stdout
    assert not (tmp_path / "runs" / "long" / "unet" / "seed-0" / "final.pt").exists()
    with tarfile.open(tmp_path / "pack" / "quick.tar") as tar:
        names = set(tar.getnames())
    assert {"quick/unet/seed-0/final.pt", "quick/unet/seed-1/log.csv", "quick/config.yaml"} <= names


def test_one_at_a_time_needs_no_ray_and_bad_job_specs_are_refused(tmp_path, tiny_cube_dir, tiny_raw):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_raw))
    bad = _sweep("--out", str(tmp_path / "r"), "--parallel", "1", f"{path}:unet")
    assert bad.returncode != 0 and "is neither CONFIG, CONFIG:ARCH[,ARCH]:SEED[,SEED] nor protocol:" in bad.stderr
    unknown = _sweep("--out", str(tmp_path / "r"), "--parallel", "1", f"{path}:resnet:0")
    assert unknown.returncode != 0 and "'resnet' is not a model of" in unknown.stderr
    quick = _config(tmp_path, tiny_raw, tiny_cube_dir, "quick", 3)
    done = _sweep("--out", str(tmp_path / "runs"), "--parallel", "1", f"{quick}:unet:0")
    assert done.returncode == 0 and "1 jobs, 0 finished before, one by one" in done.stdout, done.stdout + done.stderr
    assert (tmp_path / "runs" / "quick" / "unet" / "seed-0" / "final.pt").exists()
