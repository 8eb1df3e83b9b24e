"""`m3 sweep --ray`: four tiny trainings on the two-node cluster, interrupted and resumed, as if run one by one."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("ray", reason="Ray is not installed (the scale extra: pip install -e '.[scale]')")
torch = pytest.importorskip("torch", reason="the sweep trains with torch (the train extra)")

M3 = [sys.executable, "-m", "backend.cli"]
SEEDS = (0, 1, 2, 3)


def _model_fixtures():
    """tests/model/conftest.py (the tiny configuration and cube), loaded by path."""
    path = Path(__file__).resolve().parents[1] / "model" / "conftest.py"
    spec = importlib.util.spec_from_file_location("model_fixtures", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A tiny configuration (60 steps, a checkpoint every 5) and its cube, on a path both nodes read."""
    fixtures = _model_fixtures()
    root = tmp_path_factory.mktemp("sweep")
    fixtures.write_cube(fixtures.synthetic_arrays(), root / "cube")
    raw = json.loads(json.dumps(fixtures.TINY))
    raw["data"]["cube"] = str(root / "cube")
    raw["models"] = {"unet": dict(raw["models"]["unet"], steps=60)}
    raw["train"]["checkpoint_every"] = 5
    (root / "tiny.yaml").write_text(yaml.safe_dump(raw))
    return root / "tiny.yaml"


def _one_by_one(config: Path, out: Path) -> None:
    """What `m3 train --config C --out OUT/tiny --arch unet --seed S` writes, for each seed in turn."""
    from model.config import load_config, record_config
    from model.train import open_experiment, train_model

    cfg = load_config(config)
    record_config(cfg, config, out / "tiny")
    exp = open_experiment(cfg, base=config.parent)
    for seed in SEEDS:
        train_model(exp, "unet", seed, out / "tiny", progress=False)


def _losses(log: Path) -> list[dict]:
    """A training log's rows without the wall-clock column."""
    with log.open(newline="", encoding="utf-8") as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


def _wait_until_no_task_runs(timeout: float = 30) -> None:
    """Wait until no Ray worker process runs a sweep job (Ray names a busy worker ``ray::run_job``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = False
        for entry in Path("/proc").iterdir():
            try:
                busy = busy or (entry / "cmdline").read_bytes().startswith(b"ray::run_job")
            except OSError:
                continue
        if not busy:
            return
        time.sleep(0.2)
    raise TimeoutError("the interrupted sweep's tasks still run")


def _sweep(config: Path, out: Path, address: str) -> subprocess.Popen:
    return subprocess.Popen([*M3, "sweep", f"{config}:unet:{','.join(map(str, SEEDS))}", "--out", str(out),
                             "--ray", address], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=config.parent, start_new_session=True)


def test_a_sweep_interrupted_and_resumed_trains_what_one_by_one_does(two_nodes, tiny, tmp_path):
    out = tmp_path / "runs"
    first = _sweep(tiny, out, two_nodes.address)
    deadline = time.monotonic() + 120
    while not list(out.glob("tiny/unet/seed-*/final.pt")) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert first.poll() is None, first.communicate()[0]
    os.killpg(first.pid, signal.SIGKILL)  # the driver is gone: Ray stops its tasks, checkpoints stay
    first.wait()
    _wait_until_no_task_runs()
    finished = {p.parent.name for p in out.glob("tiny/unet/seed-*/final.pt")}
    assert 1 <= len(finished) < len(SEEDS), f"interrupted with {finished} finished"
    partial = {p.parent.name for p in out.glob("tiny/unet/seed-*/checkpoint.pt")} - finished

    second = _sweep(tiny, out, two_nodes.address)
    text, _ = second.communicate(timeout=300)
    assert second.returncode == 0, text
    assert f"{len(SEEDS)} jobs, {len(finished)} finished before, on Ray" in text
    assert text.count(" skipped tiny unet seed ") == len(finished) and "not finished" not in text
    for folder in partial:  # stopped between checkpoints: the rerun went on from the last one
        assert "resuming unet seed" in (out / "tiny" / f"train-unet-{folder.split('-')[1]}.out").read_text()

    _one_by_one(tiny, tmp_path / "one-by-one")
    for seed in SEEDS:
        swept = out / "tiny" / "unet" / f"seed-{seed}"
        alone = tmp_path / "one-by-one" / "tiny" / "unet" / f"seed-{seed}"
        assert _losses(swept / "log.csv") == _losses(alone / "log.csv"), seed
        a = torch.load(swept / "final.pt", weights_only=False)
        b = torch.load(alone / "final.pt", weights_only=False)
        assert a["step"] == b["step"] == 60
        for key, value in b["model"].items():
            assert torch.equal(a["model"][key], value), (seed, key)
        assert not (swept / "checkpoint.pt").exists()
    assert (out / "tiny" / "config.yaml").exists() and (out / "tiny" / "train-unet-3.out").exists()


def test_sweep_specs_are_checked_before_anything_runs(tiny, tmp_path):
    bad = subprocess.run([*M3, "sweep", f"{tiny}:unet", "--out", str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 1 and "is neither CONFIG, CONFIG:ARCH[,ARCH]:SEED[,SEED] nor protocol:" in bad.stderr
    unknown = subprocess.run([*M3, "sweep", f"{tiny}:resnet:0", "--out", str(tmp_path)], capture_output=True,
                             text=True)
    assert unknown.returncode == 1 and "'resnet' is not a model of" in unknown.stderr
    assert not list(tmp_path.iterdir())
