"""The job list of `m3 sweep` (no Ray needed): specs, order, duplicates, what counts as finished."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.settings import PROJECT_ROOT
from model.sweep import Job, SweepError, parse_jobs


def test_a_configuration_is_every_model_and_seed_with_gated_models_after_their_experts(tmp_path):
    jobs, configs = parse_jobs(["configs/demo.yaml:unet:0", "configs/demo.yaml"], tmp_path, PROJECT_ROOT)
    cfg = configs[PROJECT_ROOT / "configs" / "demo.yaml"]
    assert len(jobs) == len(cfg.models) * len(cfg.train.seeds), "the job named twice is there once"
    assert all(j.run == tmp_path / "demo" and j.config.is_absolute() for j in jobs)
    gated = [j for j in jobs if j.after]
    assert {j.arch for j in gated} == {"unet"} and len(gated) == len(cfg.train.seeds)
    for job in gated:
        assert {a.arch for a in job.after} == set(cfg.models["unet"].experts)
        assert all(a.seed == job.seed and jobs.index(a) < jobs.index(job) for a in job.after)


def test_bad_specs_say_what_is_allowed(tmp_path):
    with pytest.raises(SweepError, match="is neither CONFIG, CONFIG:ARCH"):
        parse_jobs(["configs/demo.yaml:unet"], tmp_path, PROJECT_ROOT)
    with pytest.raises(SweepError, match="'resnet' is not a model of configs/demo.yaml; configured: "):
        parse_jobs(["configs/demo.yaml:resnet:0"], tmp_path, PROJECT_ROOT)
    with pytest.raises(SweepError, match="nope.yaml is not a file"):
        parse_jobs(["nope.yaml"], tmp_path, PROJECT_ROOT)


def test_finished_means_the_result_file_is_there(tmp_path: Path):
    train = Job(tmp_path / "c.yaml", tmp_path / "run", arch="unet", seed=2)
    unit = Job(tmp_path / "c.yaml", tmp_path / "run", unit="cv-1")
    assert not train.finished() and not unit.finished()
    (tmp_path / "run" / "unet" / "seed-2").mkdir(parents=True)
    (tmp_path / "run" / "unet" / "seed-2" / "checkpoint.pt").touch()
    assert not train.finished(), "a checkpoint is a job to resume"
    (tmp_path / "run" / "unet" / "seed-2" / "final.pt").touch()
    (tmp_path / "run" / "protocol" / "cv-1").mkdir(parents=True)
    (tmp_path / "run" / "protocol" / "cv-1" / "fold.json").write_text("{}")
    assert train.finished() and unit.finished()
    assert train.out_file.name == "train-unet-2.out" and unit.out_file.name == "protocol-cv-1.out"
