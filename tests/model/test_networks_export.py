import json

import numpy as np
import pytest
import torch

from model.export import export_onnx, onnx_parity
from model.networks import ProbabilityModel, build_network

pytest.importorskip("onnxruntime")


def _inputs(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    x = np.zeros((n, 10, size, size), dtype=np.float32)
    x[:, :3] = rng.random((n, 3, size, size)) < 0.1
    x[:, 3:6] = rng.random((n, 3, 1, 1)) < 0.5
    x[:, :3] *= 1 - x[:, 3:6]
    x[:, 6:8] = rng.standard_normal((n, 2, size, size))
    x[:, 6, :4, :4] = np.nan
    x[:, 8:] = np.isfinite(x[:, 6:8])
    return x


@pytest.mark.parametrize("arch,params", [("unet", {"width": 4, "depth": 2}), ("vit", {"patch": 4, "embed_dim": 16,
                                                                                     "layers": 1, "heads": 2})])
def test_networks_map_raw_inputs_to_probabilities(arch, params):
    torch.manual_seed(0)
    net = build_network(arch, params, 3, 2, blur_radius=2, cooccurrence=torch.rand(3, 3)).eval()
    x = torch.from_numpy(_inputs(np.random.default_rng(0), 2, 16))
    prob = ProbabilityModel(net)(x)
    assert prob.shape == (2, 3, 16, 16)
    assert torch.all(torch.isfinite(prob)) and torch.all((prob >= 0) & (prob <= 1))


def test_onnx_matches_torch_on_two_sizes_and_batches(tmp_path):
    torch.manual_seed(0)
    net = build_network("unet", {"width": 8, "depth": 3}, 3, 2, blur_radius=2, cooccurrence=torch.rand(3, 3),
                        prior_skip=True, context_radius=6)
    net.train()
    net(torch.from_numpy(np.nan_to_num(_inputs(np.random.default_rng(1), 4, 32))))  # non-trivial BN statistics
    net.eval()
    path = tmp_path / "model.onnx"
    export_onnx(net, path, 10, size=32)
    rng = np.random.default_rng(2)
    for size in (32, 56):
        for n in (1, 4):
            assert onnx_parity(net, path, _inputs(rng, n, size)) <= 1e-4


@pytest.mark.slow
def test_export_run_writes_the_contract(tmp_path, tiny_config, tiny_arrays):
    from model.export import export_run
    from model.train import open_experiment, train_model

    exp = open_experiment(tiny_config, cube=tiny_arrays)
    train_model(exp, "unet", 0, tmp_path, progress=False)
    payload = export_run(exp, tmp_path)
    stored = json.loads((tmp_path / "model.json").read_text())
    assert stored["sha256"] == payload["sha256"]
    for key in ("format", "onnx", "input", "output", "channels", "species", "covariates", "multiple", "cell_size_m",
                "crs", "normalisation", "opset", "sha256", "config", "metrics", "cube"):
        assert key in stored
    assert stored["format"] == "m3-model/1" and stored["input"] == "x" and stored["output"] == "prob"
    assert stored["channels"][:3] == ["visible:gold", "visible:silver", "visible:copper"]
    assert all(c.split(":")[0] in {"visible", "hidden", "cov", "valid"} for c in stored["channels"])


def test_stem_radii_must_be_positive():
    from model.networks import InputStem

    co = torch.rand(3, 3)
    with pytest.raises(ValueError, match="radii must be positive"):
        InputStem(3, 2, 0, co)
    with pytest.raises(ValueError, match="radii must be positive"):
        InputStem(3, 2, 2, co, context_radius=-1)


def test_an_empty_covariate_list_trains_on_the_site_layers_alone(tiny_cube_dir, tiny_raw):
    """``data.covariates: []`` means no covariates (not all of them): the inputs are the species channels."""
    from model.config import config_from_dict
    from model.train import new_network, open_experiment

    raw = dict(tiny_raw, data=dict(tiny_raw["data"], cube=str(tiny_cube_dir), covariates=[]))
    exp = open_experiment(config_from_dict(raw))
    n_s = len(exp.cube.species)
    assert exp.cube.covariates == [] and exp.cube.cov.shape[0] == 0 and exp.cube.valid.shape[0] == 0
    net = new_network(exp, "unet").eval()
    assert net.stem.in_channels == 2 * n_s
    with torch.no_grad():
        out = net(torch.zeros(1, 2 * n_s, 32, 32))
    assert out.shape == (1, n_s, 32, 32) and torch.all(torch.isfinite(out))
    everything = open_experiment(config_from_dict(dict(tiny_raw, data=dict(tiny_raw["data"], cube=str(tiny_cube_dir)))))
    assert everything.cube.covariates, "leaving covariates out still means all of them"
