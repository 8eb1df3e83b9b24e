import json

from model.evaluate import evaluate_run
from model.report import _clean
from model.train import open_experiment, train_model


def _train_and_evaluate(run_dir, cfg, arrays) -> str:
    exp = open_experiment(cfg, cube=arrays)
    for arch in cfg.models:
        train_model(exp, arch, 0, run_dir, progress=False)
    return json.dumps(_clean(evaluate_run(exp, run_dir, progress=False)), sort_keys=True)


def test_same_seed_same_metrics(tmp_path, tiny_config, tiny_arrays):
    first = _train_and_evaluate(tmp_path / "a", tiny_config, tiny_arrays)
    second = _train_and_evaluate(tmp_path / "b", tiny_config, tiny_arrays)
    assert first == second


def _straight_and_resumed(exp, tmp_path, monkeypatch):
    """Checkpoints of one uninterrupted run and of a run stopped at its 4th step, then resumed."""
    import pytest
    import torch

    import model.train as train_module

    straight = torch.load(train_model(exp, "unet", 0, tmp_path / "straight", progress=False), weights_only=False)
    real_loss, calls = train_module.masked_loss, {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(train_module, "masked_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_model(exp, "unet", 0, tmp_path / "resumed", progress=False)
    assert (tmp_path / "resumed" / "unet" / "seed-0" / "checkpoint.pt").exists()
    monkeypatch.setattr(train_module, "masked_loss", real_loss)
    resumed = torch.load(train_model(exp, "unet", 0, tmp_path / "resumed", progress=False), weights_only=False)
    return straight, resumed


def test_resume_gives_the_same_model(tmp_path, tiny_config, tiny_arrays, monkeypatch):
    import torch

    exp = open_experiment(tiny_config, cube=tiny_arrays)  # 4 steps, a checkpoint every 2
    straight, resumed = _straight_and_resumed(exp, tmp_path, monkeypatch)
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


def _with_selection(cfg):
    from model.config import config_from_dict

    raw = cfg.to_dict()
    raw["train"]["select_every"] = 1
    return config_from_dict(raw)


def test_validation_selection_keeps_the_best_scored_weights(tmp_path, tiny_config, tiny_arrays):
    import csv
    import math

    import torch

    from model.train import ValidationSelector, load_trained

    exp = open_experiment(_with_selection(tiny_config), cube=tiny_arrays)
    path = train_model(exp, "unet", 0, tmp_path, progress=False)
    saved = torch.load(path, weights_only=False)
    rows = list(csv.DictReader((path.parent / "selection.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert {"val_auprc_species", "val_auprc_region", "val_auprc_mixed"} <= set(rows[0])
    scores = {int(r["step"]): float(r["score"]) for r in rows}
    best = max(scores, key=lambda k: scores[k])
    assert saved["selected_step"] == best and saved["step"] == 4
    assert math.isclose(saved["validation_score"], scores[best], abs_tol=1e-6)
    # the saved weights are the ones that scored best: scoring them again gives that score
    again, _ = ValidationSelector(exp).score(load_trained(exp, "unet", path))
    assert math.isclose(again, saved["validation_score"], rel_tol=1e-9, abs_tol=1e-12)


def test_resume_keeps_the_validation_selection(tmp_path, tiny_config, tiny_arrays, monkeypatch):
    import torch

    exp = open_experiment(_with_selection(tiny_config), cube=tiny_arrays)
    straight, resumed = _straight_and_resumed(exp, tmp_path, monkeypatch)
    assert resumed["selected_step"] == straight["selected_step"]
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    rows = (tmp_path / "resumed" / "unet" / "seed-0" / "selection.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4"]
    log_rows = (tmp_path / "resumed" / "unet" / "seed-0" / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in log_rows[1:]] == ["1", "2", "3", "4"]  # no step logged twice


def _with_ema(cfg, decay: float = 0.5):
    from model.config import config_from_dict

    raw = cfg.to_dict()
    raw["models"]["unet"]["ema_decay"] = decay
    return config_from_dict(raw)


def test_moving_average_is_the_saved_model(tmp_path, tiny_config, tiny_arrays):
    import torch

    exp = open_experiment(_with_ema(tiny_config), cube=tiny_arrays)
    saved = torch.load(train_model(exp, "unet", 0, tmp_path / "ema", progress=False), weights_only=False)
    # the last weights are those of the same run without the average (the average does not steer training)
    plain = torch.load(train_model(open_experiment(tiny_config, cube=tiny_arrays), "unet", 0, tmp_path / "plain",
                                   progress=False), weights_only=False)
    for key, value in plain["model"].items():
        assert torch.equal(value, saved["last_weights"][key]), key
    # and the saved model is their average, not the last step's weights
    floats = [k for k, v in saved["model"].items() if v.is_floating_point() and "running" not in k]
    assert any(not torch.equal(saved["model"][k], saved["last_weights"][k]) for k in floats)


def test_resume_keeps_the_moving_average(tmp_path, tiny_config, tiny_arrays, monkeypatch):
    import torch

    exp = open_experiment(_with_ema(tiny_config), cube=tiny_arrays)
    straight, resumed = _straight_and_resumed(exp, tmp_path, monkeypatch)
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


def test_moving_average_decay_is_checked(tiny_config):
    import pytest

    with pytest.raises(ValueError, match="ema_decay must be in"):
        _with_ema(tiny_config, 1.0)
