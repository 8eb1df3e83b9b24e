"""The steps of train_model: prefetched batches, the training log, checkpoint state, resuming, the saved weights."""

from __future__ import annotations

import copy
import csv
from contextlib import closing
from types import SimpleNamespace

import numpy as np
import torch

from model.config import config_from_dict, model_loss, model_masking
from model.cube_data import CubeArrays
from model.masking import MaskGenerator
from model.patches import PatchSampler
from model.train import (
    Experiment,
    _log_row,
    _ModelFiles,
    _new_run,
    _positive_weight,
    _prefetched,
    _resume_or_restart,
    _Run,
    _save_atomic,
    _training_log,
    model_dir,
    open_experiment,
)

CPU = torch.device("cpu")


class Draws:
    """A stand-in sampler whose batches are a few integers drawn from the generator."""

    def batch(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.integers(0, 1_000_000, size)


def test_prefetched_batches_are_the_sequential_draws_with_the_state_before_the_next() -> None:
    got = list(_prefetched(Draws(), np.random.default_rng(3), 2, 1, 4))
    ref = np.random.default_rng(3)
    expected = []
    for _ in range(3):
        batch = ref.integers(0, 1_000_000, 2)
        expected.append((batch, ref.bit_generator.state))
    assert len(got) == 3
    for (batch, state), (want, want_state) in zip(got, expected, strict=True):
        assert np.array_equal(batch, want) and state == want_state
    assert list(_prefetched(Draws(), np.random.default_rng(3), 2, 4, 4)) == []


def test_closing_the_prefetch_stops_after_the_batch_in_flight() -> None:
    rng = np.random.default_rng(5)
    with closing(_prefetched(Draws(), rng, 1, 0, 10)) as batches:
        _, state = next(batches)
    ref = np.random.default_rng(5)
    ref.integers(0, 1_000_000, 1)
    assert state == ref.bit_generator.state
    ref.integers(0, 1_000_000, 1)  # the one drawn in the background, then no more
    assert rng.bit_generator.state == ref.bit_generator.state


def test_log_row_rounds_every_value() -> None:
    row = _log_row(3, 0.123456789, 0.000123456789, 1.23456, {"bce": 0.98765432, "dice": 0.5})
    assert row == {"step": 3, "loss": 0.123457, "lr": 0.00012346, "seconds": 1.23, "bce": 0.987654, "dice": 0.5}


def test_training_log_writes_its_header_once(tmp_path) -> None:
    path = tmp_path / "log.csv"
    with _training_log(path) as write:
        write(_log_row(1, 0.5, 0.1, 1.0, {}))
        assert path.read_text().splitlines()[-1].startswith("1,0.5,")  # flushed at once
    with _training_log(path) as write:
        write(_log_row(2, 0.4, 0.1, 2.0, {"bce": 0.3}))
    rows = list(csv.DictReader(path.open()))
    assert [r["step"] for r in rows] == ["1", "2"] and rows[1]["bce"] == "0.3"


def _learn(exp: Experiment, run: _Run, steps: int) -> None:
    """A few optimiser steps on batches of the run's generator."""
    cfg, spec = exp.cfg, exp.cfg.models["unet"]
    sampler = PatchSampler(exp.cube, exp.split, MaskGenerator(model_masking(cfg, spec), len(exp.cube.species)),
                           cfg.data.patch_cells)
    for _ in range(steps):
        run.learn(sampler.batch(run.rng, 2), 1e-3, model_loss(cfg, spec), None)


def test_a_restored_checkpoint_continues_exactly(tiny_config, tiny_arrays: CubeArrays) -> None:
    exp = open_experiment(tiny_config, cube=tiny_arrays)
    torch.manual_seed(0)
    run = _new_run(exp, "unet", 0, CPU)
    _learn(exp, run, 2)
    assert run.step == 2
    state = copy.deepcopy(run.checkpoint(run.rng.bit_generator.state))  # as saved: no tensor shared with the run
    torch.manual_seed(0)  # as train_model seeds it before building the network it resumes
    again = _new_run(exp, "unet", 1, CPU)
    again.restore(state)
    assert again.step == 2 and again.rng.bit_generator.state == run.rng.bit_generator.state
    torch_rng = torch.get_rng_state()  # restored from the checkpoint; both runs continue from it
    _learn(exp, run, 1)
    torch.set_rng_state(torch_rng)
    _learn(exp, again, 1)
    for key, value in run.net.state_dict().items():
        assert torch.equal(value, again.net.state_dict()[key]), key


def test_final_weights_are_the_selected_else_the_average_else_the_last(tiny_config, tiny_raw, tiny_arrays) -> None:
    plain = _new_run(open_experiment(tiny_config, cube=tiny_arrays), "unet", 0, CPU)
    weights, extra = plain.final_weights()
    assert extra == {} and weights.keys() == plain.net.state_dict().keys()
    tiny_raw["models"]["unet"]["ema_decay"] = 0.5
    exp = open_experiment(config_from_dict(tiny_raw), cube=tiny_arrays)
    run = _new_run(exp, "unet", 0, CPU)
    _learn(exp, run, 2)
    weights, extra = run.final_weights()
    assert set(extra) == {"last_weights"}
    for key, value in run.net.state_dict().items():
        assert torch.equal(extra["last_weights"][key], value)
    for key, value in run.ema.module.state_dict().items():
        assert torch.equal(weights[key], value)
    best = {"w": torch.zeros(1)}
    run.selector = SimpleNamespace(best_state=best, best_step=1, best_score=-2.0)
    weights, extra = run.final_weights()
    assert weights is best and extra["selected_step"] == 1 and extra["validation_score"] == -2.0
    assert "last_weights" in extra


def test_resume_cuts_the_logs_back_to_the_checkpoint(tmp_path, tiny_config, tiny_arrays) -> None:
    exp = open_experiment(tiny_config, cube=tiny_arrays)
    files = _ModelFiles.under(model_dir(tmp_path, "unet", 0))
    files.final.parent.mkdir(parents=True)
    run = _new_run(exp, "unet", 0, CPU)
    _learn(exp, run, 2)
    _save_atomic(run.checkpoint(run.rng.bit_generator.state), files.checkpoint)
    with _training_log(files.log) as write:
        for step in range(1, 5):
            write(_log_row(step, 0.1, 0.1, 0.0, {}))
    files.selection.write_text("step,score\n1,0.1\n2,0.2\n3,0.3\n")
    again = _new_run(exp, "unet", 0, CPU)
    _resume_or_restart(again, files, "unet seed 0")
    assert again.step == 2
    assert [r.split(",")[0] for r in files.log.read_text().splitlines()[1:]] == ["1", "2"]
    assert files.selection.read_text().splitlines()[1:] == ["1,0.1", "2,0.2"]
    files.checkpoint.unlink()
    fresh = _new_run(exp, "unet", 0, CPU)
    _resume_or_restart(fresh, files, "unet seed 0")  # no checkpoint: the old logs go
    assert fresh.step == 0 and not files.log.exists() and not files.selection.exists()


def test_positive_weights_only_with_species_balance(tiny_config, tiny_raw, tiny_arrays) -> None:
    exp = open_experiment(tiny_config, cube=tiny_arrays)
    assert _positive_weight(exp, model_loss(exp.cfg, exp.cfg.models["unet"]), CPU) is None
    tiny_raw["loss"]["species_balance"] = 0.5
    exp = open_experiment(config_from_dict(tiny_raw), cube=tiny_arrays)
    weight = _positive_weight(exp, model_loss(exp.cfg, exp.cfg.models["unet"]), CPU)
    assert weight is not None and weight.shape == (len(exp.cube.species),) and torch.isfinite(weight).all()
