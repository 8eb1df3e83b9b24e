"""data.unsurveyed: unknown — unsurveyed cells without a record are hidden inputs and never training targets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from model.config import config_from_dict, digest_dict
from model.masking import MaskGenerator


def _unknown(tiny_raw: dict) -> dict:
    return dict(tiny_raw, data=dict(tiny_raw["data"], unsurveyed="unknown"))


def test_the_option_is_checked_and_its_old_value_keeps_the_digest(tiny_raw) -> None:
    with pytest.raises(ValueError, match="data.unsurveyed must be one of"):
        config_from_dict(dict(tiny_raw, data=dict(tiny_raw["data"], unsurveyed="zero")))
    plain = config_from_dict(tiny_raw)
    absent = config_from_dict(dict(tiny_raw, data=dict(tiny_raw["data"], unsurveyed="absent")))
    assert digest_dict(plain) == digest_dict(absent) and "unsurveyed" not in digest_dict(plain)["data"]
    assert digest_dict(config_from_dict(_unknown(tiny_raw)))["data"]["unsurveyed"] == "unknown"


def test_patches_hide_unsurveyed_cells_and_never_score_them(tiny_raw, tiny_arrays) -> None:
    from model.patches import PatchSampler
    from model.train import open_experiment

    exp = open_experiment(config_from_dict(_unknown(tiny_raw)), cube=tiny_arrays)
    n_s = len(exp.cube.species)
    assert [f"{c.kind}:{c.name}" for c in exp.layout.channels][-1] == "surveyed:coverage"
    sampler = PatchSampler(exp.cube, exp.split, MaskGenerator(exp.cfg.masking, n_s), 32, exp.layout)
    rng = np.random.default_rng(0)
    seen = 0
    for _ in range(40):
        x, y, loss = sampler.patch(np.random.default_rng(int(rng.integers(1 << 30))))
        cover = x[-1] > 0
        seen += int((~cover).sum())
        assert not loss[:, ~cover].any(), "an unsurveyed cell was a training target"
        for s in range(n_s):
            empty_outside = ~cover & (y[s] == 0)
            assert (x[n_s + s][empty_outside] == 1).all(), "an unsurveyed empty cell was fed as a known absence"
            record_outside = ~cover & (y[s] == 1) & (x[n_s + s] == 0)
            assert (x[s][record_outside] == 1).all()
    assert seen > 0, "no patch reached the unsurveyed quarter"


@pytest.mark.slow
def test_training_and_export_carry_the_mode_and_the_channel(tmp_path, tiny_raw, tiny_arrays) -> None:
    from backend.inference.contract import load_model_card
    from model.export import export_run, onnx_parity
    from model.train import load_trained, model_dir, open_experiment, train_model

    exp = open_experiment(config_from_dict(_unknown(tiny_raw)), cube=tiny_arrays)
    train_model(exp, "unet", 0, tmp_path, progress=False)
    (tmp_path / "metrics.json").write_text(json.dumps({"regimes": {}}))
    payload = export_run(exp, tmp_path)
    assert payload["unsurveyed"] == "unknown" and payload["channels"][-1] == "surveyed:coverage"
    card = load_model_card(tmp_path)
    assert card.unsurveyed == "unknown" and len(card.channels) == len(exp.layout.channels)
    net = load_trained(exp, "unet", model_dir(tmp_path, "unet", 0) / "final.pt")
    assert net.stem.in_channels == len(exp.layout.channels)
    x = np.random.default_rng(1).random((2, len(card.channels), 32, 32)).astype(np.float32)
    assert onnx_parity(net, tmp_path / "model.onnx", x) <= 1e-4
    with torch.no_grad():
        assert torch.isfinite(net(torch.from_numpy(x))).all()


@pytest.mark.slow
def test_every_trained_seed_is_exported_as_a_member(tmp_path, tiny_config, tiny_arrays) -> None:
    from backend.inference.contract import load_model_card
    from backend.inference.engine import InferenceEngine
    from model.export import export_run, onnx_parity
    from model.train import load_trained, model_dir, open_experiment, train_model

    exp = open_experiment(tiny_config, cube=tiny_arrays)
    for seed in (0, 2):  # seed 2 trained beside the configured seed 0 (m3 train --seed 2)
        train_model(exp, "unet", seed, tmp_path, progress=False)
    payload = export_run(exp, tmp_path)
    assert [(m["onnx"], m["seed"]) for m in payload["members"]] == [("model.onnx", 0), ("model-seed-2.onnx", 2)]
    card = load_model_card(tmp_path)
    assert len(InferenceEngine(card).members) == 2
    x = np.random.default_rng(4).random((1, len(card.channels), 32, 32)).astype(np.float32)
    net = load_trained(exp, "unet", model_dir(tmp_path, "unet", 2) / "final.pt")
    assert onnx_parity(net, tmp_path / "model-seed-2.onnx", x) <= 1e-4
