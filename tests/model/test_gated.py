"""The gated UNet: two experts behind a per-cell gate on the hidden channels (models.NAME.arch: gated)."""

import numpy as np
import pytest
import torch

from model.config import config_from_dict
from model.networks import GatedExperts, build_network
from model.train import load_trained, model_dir, model_masking, open_experiment, train_model


def _expert(seed: int):
    torch.manual_seed(seed)
    return build_network("unet", {"width": 4, "depth": 2}, 3, 2, blur_radius=2, cooccurrence=torch.rand(3, 3),
                         prior_skip=True).eval()


def _gated_raw(tiny_config) -> dict:
    raw = tiny_config.to_dict()
    plain = raw["models"].pop("unet")
    raw["models"] = {"unet_known": plain | {"regime_weights": [1.0, 0.0, 0.0]}, "unet_blind": dict(plain),
                     "unet": {"arch": "gated", "experts": ["unet_known", "unet_blind"]}, "vit": raw["models"]["vit"]}
    return raw


def test_gate_takes_the_known_expert_where_a_species_is_visible():
    known, blind = _expert(0), _expert(1)
    net = GatedExperts(known, blind).eval()
    rng = np.random.default_rng(0)
    x = np.zeros((2, 10, 16, 16), dtype=np.float32)
    x[:, :3] = rng.random((2, 3, 16, 16)) < 0.2
    x[:, 3:6, :8] = 1.0           # top half: every species hidden (a hidden region)
    x[:, 3, 8:] = 1.0             # bottom half: one species hidden, two visible
    x[:, :3] *= 1 - x[:, 3:6]
    x[:, 6:8] = rng.standard_normal((2, 2, 16, 16))
    x[:, 8:] = 1.0
    t = torch.from_numpy(x)
    with torch.no_grad():
        out, k, b = net(t), known(t), blind(t)
    assert torch.equal(out[..., :8, :], b[..., :8, :])
    assert torch.equal(out[..., 8:, :], k[..., 8:, :])
    assert not torch.allclose(k, b)


def test_gated_onnx_matches_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    from model.export import export_onnx, onnx_parity

    net = GatedExperts(_expert(0), _expert(1)).eval()
    path = tmp_path / "model.onnx"
    export_onnx(net, path, 10, size=16)
    rng = np.random.default_rng(3)
    for size in (16, 40):
        for n in (1, 4):
            x = np.zeros((n, 10, size, size), dtype=np.float32)
            x[:, 3:6] = rng.random((n, 3, size, size)) < 0.5
            x[:, :3] = (rng.random((n, 3, size, size)) < 0.2) * (1 - x[:, 3:6])
            x[:, 6:8] = rng.standard_normal((n, 2, size, size))
            x[:, 8:] = 1.0
            assert onnx_parity(net, path, x) <= 1e-4


@pytest.mark.parametrize("change,message", [
    (lambda m: m["unet"].update(experts=["unet_known"]), "must name two models"),
    (lambda m: m["unet"].update(experts=["unet_known", "nope"]), "is not another model"),
    (lambda m: m["unet_blind"].update(experts=["unet_known", "vit"]), "only for arch: gated"),
    (lambda m: m["unet_known"].update(regime_weights=[0.0, 0.0, 0.0]), "regime_weights must be three"),
])
def test_gated_configuration_is_checked(tiny_config, change, message):
    raw = _gated_raw(tiny_config)
    change(raw["models"])
    with pytest.raises(ValueError, match=message):
        config_from_dict(raw)


def test_training_a_gated_model_trains_its_experts_and_composes_them(tmp_path, tiny_config, tiny_arrays):
    cfg = config_from_dict(_gated_raw(tiny_config))
    assert model_masking(cfg, cfg.models["unet_known"]).regime_weights == (1.0, 0.0, 0.0)
    assert model_masking(cfg, cfg.models["unet_blind"]) == cfg.masking
    exp = open_experiment(cfg, cube=tiny_arrays)
    path = train_model(exp, "unet", 0, tmp_path, progress=False)
    assert path == model_dir(tmp_path, "unet", 0) / "final.pt"
    net = load_trained(exp, "unet", path)
    assert isinstance(net, GatedExperts)
    for name, expert in (("unet_known", net.known), ("unet_blind", net.blind)):
        saved = torch.load(model_dir(tmp_path, name, 0) / "final.pt", weights_only=False)["model"]
        for key, value in expert.state_dict().items():
            assert torch.equal(value, saved[key]), (name, key)
    # the two experts saw different training masks (species-hidden patches only, against all regimes)
    known = torch.load(model_dir(tmp_path, "unet_known", 0) / "final.pt", weights_only=False)["model"]
    blind = torch.load(model_dir(tmp_path, "unet_blind", 0) / "final.pt", weights_only=False)["model"]
    assert not torch.equal(known["body.head.weight"], blind["body.head.weight"])


def test_report_does_not_count_the_experts_as_rivals():
    from model.report import verdict

    def entry(dice: float) -> dict:
        return {"summary": {"mean": {m: {"mean": dice, "std": 0.0} for m in ("dice", "auprc")}}}

    methods = {"unet": entry(0.30), "unet_known": entry(0.40), "neighbourhood": entry(0.20)}
    assert "Neighbourhood" in verdict("species", methods, ["unet_known", "unet_blind"])
    assert "beats" in verdict("species", methods, ["unet_known", "unet_blind"])
    assert "trails the best other method (unet_known" in verdict("species", methods)


def test_a_model_may_override_masking_and_loss_keys(tiny_config):
    from model.config import model_loss

    raw = _gated_raw(tiny_config)
    raw["models"]["unet_blind"] |= {"masking": {"region_min_cells": 5, "mixed_species_fraction": None},
                                    "loss": {"dice": 0.3, "species_balance": 0.5}}
    cfg = config_from_dict(raw)
    blind, known = cfg.models["unet_blind"], cfg.models["unet_known"]
    masks = model_masking(cfg, blind)
    assert masks.region_min_cells == 5 and masks.mixed_species_fraction is None
    assert masks.species_fraction == cfg.masking.species_fraction  # keys it does not set stay the experiment's
    assert model_loss(cfg, blind).dice == 0.3 and model_loss(cfg, blind).species_balance == 0.5
    assert model_loss(cfg, blind).bce == cfg.loss.bce
    assert model_loss(cfg, known) == cfg.loss
    assert model_masking(cfg, known).region_min_cells == cfg.masking.region_min_cells


@pytest.mark.parametrize("override,message", [
    ({"masking": {"region_size": 5}}, r"unknown key\(s\) \['region_size'\] in models.unet_blind.masking"),
    ({"loss": {"focal": 1.0}}, r"unknown key\(s\) \['focal'\] in models.unet_blind.loss"),
    ({"masking": {"regime_weights": [0, 1, 1]}}, "set the regime mix as models.unet_blind.regime_weights"),
])
def test_model_overrides_reject_unknown_keys(tiny_config, override, message):
    raw = _gated_raw(tiny_config)
    raw["models"]["unet_blind"] |= override
    with pytest.raises(ValueError, match=message):
        config_from_dict(raw)


def test_a_per_model_loss_changes_only_that_models_training(tmp_path, tiny_config, tiny_arrays):
    import csv

    def first_losses(raw: dict, arch: str, out) -> list[str]:
        exp = open_experiment(config_from_dict(raw), cube=tiny_arrays)
        train_model(exp, arch, 0, out, progress=False)
        with (model_dir(out, arch, 0) / "log.csv").open() as fh:
            return [row["loss"] for row in csv.DictReader(fh)]

    plain = _gated_raw(tiny_config)
    changed = _gated_raw(tiny_config)
    changed["models"]["unet_blind"]["loss"] = {"bce": 2.0}
    assert first_losses(plain, "unet_blind", tmp_path / "a") != first_losses(changed, "unet_blind", tmp_path / "b")
    assert first_losses(plain, "unet_known", tmp_path / "a") == first_losses(changed, "unet_known", tmp_path / "b")


def test_export_writes_the_blind_graph_for_all_hidden_cells(tmp_path, tiny_config, tiny_arrays):
    pytest.importorskip("onnxruntime")
    import json

    import onnxruntime as ort

    from backend.inference.contract import load_model_card
    from backend.inference.engine import InferenceEngine
    from model.export import export_run

    exp = open_experiment(config_from_dict(_gated_raw(tiny_config)), cube=tiny_arrays)
    train_model(exp, "unet", 0, tmp_path, progress=False)
    (tmp_path / "metrics.json").write_text(json.dumps({"regimes": {}}))
    served = tmp_path / "served"  # m3 export --out: the served folder, apart from the run
    payload = export_run(exp, tmp_path, served)
    assert payload["members"][0]["hidden_onnx"] == "model.hidden.onnx" and payload["run"] == tmp_path.as_posix()
    assert sorted(p.name for p in served.iterdir()) == ["model.hidden.onnx", "model.json", "model.onnx"]
    engine = InferenceEngine(load_model_card(served))
    hidden = engine.hidden_members
    assert [e.path.name for e in hidden] == ["model.hidden.onnx"] and hidden[0].hidden
    assert engine.members == [engine] and not engine.hidden

    s = len(exp.cube.species)
    n_channels = len(engine.card.channels)
    rng = np.random.default_rng(5)
    x = np.zeros((1, n_channels, 32, 32), dtype=np.float32)
    x[:, s:2 * s] = rng.random((1, s, 32, 32)) < 0.3
    x[:, s:2 * s, 4:20, 6:26] = 1.0                      # a hidden region: every species hidden
    x[:, :s] = (rng.random((1, s, 32, 32)) < 0.2) * (1 - x[:, s:2 * s])
    x[:, 2 * s:] = rng.standard_normal((1, n_channels - 2 * s, 32, 32))
    full = ort.InferenceSession(str(served / "model.onnx")).run(None, {"x": x})[0]
    blind = hidden[0].predict(x)
    every = x[0, s:2 * s].min(axis=0) == 1
    np.testing.assert_allclose(blind[:, :, every], full[:, :, every], atol=1e-6)
    assert not np.allclose(blind[:, :, ~every], full[:, :, ~every], atol=1e-3)  # elsewhere the known expert's
