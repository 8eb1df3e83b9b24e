"""scripts/gpu_sweep.py: many training jobs at once, a deadline, one tar per run folder."""

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
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_jobs_run_in_parallel_and_are_packed(tmp_path, tiny_cube_dir, tiny_raw):
    config = _config(tmp_path, tiny_raw, tiny_cube_dir, "quick", 3)
    done = _sweep("--out", str(tmp_path / "runs"), "--parallel", "2", "--pack", str(tmp_path / "pack"),
                  f"{config}:unet:0,1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 jobs, 2 at a time" in done.stdout
    with tarfile.open(tmp_path / "pack" / "quick.tar") as tar:
        names = set(tar.getnames())
    assert {"quick/unet/seed-0/final.pt", "quick/unet/seed-1/log.csv", "quick/config.yaml"} <= names


@pytest.mark.slow
def test_a_deadline_stops_jobs_and_says_which(tmp_path, tiny_cube_dir, tiny_raw):
    config = _config(tmp_path, tiny_raw, tiny_cube_dir, "long", 100000)
    done = _sweep("--out", str(tmp_path / "runs"), "--deadline", "1", f"{config}:unet:0")
    assert done.returncode == 1
    assert "deadline: stopping 1 jobs" in done.stdout and "not finished: long unet seed 0 (stopped)" in done.stdout
    assert not (tmp_path / "runs" / "long" / "unet" / "seed-0" / "final.pt").exists()


def test_bad_job_specs_are_refused(tmp_path, tiny_raw):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_raw))
    bad = _sweep("--out", str(tmp_path / "r"), f"{path}:unet")
    assert bad.returncode != 0 and "is neither CONFIG:ARCH[,ARCH]:SEED[,SEED] nor protocol:CONFIG:UNIT" in bad.stderr
    unknown = _sweep("--out", str(tmp_path / "r"), f"{path}:resnet:0")
    assert unknown.returncode != 0 and "'resnet' is not a model of" in unknown.stderr
