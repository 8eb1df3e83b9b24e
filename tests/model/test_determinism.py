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


def test_resume_gives_the_same_model(tmp_path, tiny_config, tiny_arrays, monkeypatch):
    import pytest
    import torch

    import model.train as train_module

    exp = open_experiment(tiny_config, cube=tiny_arrays)  # 4 steps, a checkpoint every 2
    straight = torch.load(train_model(exp, "unet", 0, tmp_path / "straight", progress=False))["model"]
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
    resumed = torch.load(train_model(exp, "unet", 0, tmp_path / "resumed", progress=False))["model"]
    for key, value in straight.items():
        assert torch.equal(value, resumed[key]), key
