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
                        prior_skip=True, context_radius=6, extra_radii=(1, 5))
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


def test_stem_extra_radii_are_the_neighbourhood_baselines_densities():
    """Each extra radius adds the neighbourhood baseline's same-species and prior densities.

    So the prior skip can reproduce that baseline's ranking; each also adds an any-species density.
    """
    from model.baselines import neighbourhood_density
    from model.networks import InputStem

    rng = np.random.default_rng(3)
    x = _inputs(rng, 1, 24)
    co = torch.rand(3, 3)
    plain = InputStem(3, 2, 2, co, context_radius=6)
    stem = InputStem(3, 2, 2, co, context_radius=6, extra_radii=(1, 5))
    assert stem.n_derived == plain.n_derived + 4
    assert stem.out_channels == plain.out_channels + 2 * 2 * 3 + 2
    with torch.no_grad():
        a, b = plain(torch.from_numpy(x)).numpy()[0], stem(torch.from_numpy(x)).numpy()[0]
    c, s, n_plain = stem.in_channels, 3, plain.n_derived
    np.testing.assert_allclose(b[:c + n_plain * s], a[:c + n_plain * s], atol=1e-6)  # the old groups unchanged
    visible, known = x[0, :3].astype(np.float64), 1.0 - x[0, 3:6]
    prior = np.einsum("sj,jhw->shw", co.numpy().astype(np.float64), visible)
    any_known = known.max(axis=0)
    for i, e in enumerate((1, 5)):
        dens = b[c + (n_plain + 2 * i) * s:c + (n_plain + 2 * i + 1) * s]
        prior_dens = b[c + (n_plain + 2 * i + 1) * s:c + (n_plain + 2 * i + 2) * s]
        np.testing.assert_allclose(dens, neighbourhood_density(visible, known, e), atol=2e-3)
        np.testing.assert_allclose(prior_dens, neighbourhood_density(prior, any_known[None].repeat(3, 0), e),
                                   atol=2e-3)
    with pytest.raises(ValueError, match="radii must be positive"):
        InputStem(3, 2, 2, co, extra_radii=(0,))


@pytest.mark.parametrize("arch,params", [("unet", {"width": 4, "depth": 2}), ("vit", {"patch": 4, "embed_dim": 16,
                                                                                     "layers": 1, "heads": 2})])
def test_residual_init_starts_as_the_log_prior(arch, params):
    """With residual_init the untrained body adds nothing: logits = bias + sum_i w_i log(1 + f_i / eps)."""
    from model.networks import M3Network

    torch.manual_seed(0)
    base = torch.tensor([-5.0, -4.0, -3.0])
    net = build_network(arch, params, 3, 2, blur_radius=2, cooccurrence=torch.rand(3, 3), prior_skip=True,
                        context_radius=6, skip_transform="log", base_logit=base).eval()
    x = torch.from_numpy(_inputs(np.random.default_rng(4), 2, 16))
    with torch.no_grad():
        logits = net(x)
        features = net.stem(x)
    c, s = net.stem.in_channels, 3
    expected = base.reshape(1, 3, 1, 1).expand(2, 3, 16, 16).clone()
    for i in range(net.stem.n_derived):
        expected += 0.25 * torch.log1p(features[:, c + i * s:c + (i + 1) * s] / M3Network.LOG_EPS)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    empty = torch.zeros(1, 10, 16, 16)  # nothing visible anywhere, nothing hidden: exactly the base rate
    with torch.no_grad():
        torch.testing.assert_close(net(empty)[0, :, 8, 8], base)


def test_log_skip_residual_network_exports_to_onnx(tmp_path):
    torch.manual_seed(1)
    net = build_network("unet", {"width": 8, "depth": 3}, 3, 2, blur_radius=2, cooccurrence=torch.rand(3, 3),
                        prior_skip=True, context_radius=6, skip_transform="log",
                        base_logit=torch.tensor([-5.0, -4.0, -3.0]))
    with torch.no_grad():  # a trained body: non-zero output layer
        net.body.head.weight.normal_(0, 0.1)
    net.train()
    net(torch.from_numpy(np.nan_to_num(_inputs(np.random.default_rng(1), 4, 32))))
    net.eval()
    path = tmp_path / "model.onnx"
    export_onnx(net, path, 10, size=32)
    rng = np.random.default_rng(5)
    for size, n in ((32, 1), (56, 4)):
        assert onnx_parity(net, path, _inputs(rng, n, size)) <= 1e-4


def test_flip_average_is_flip_equivariant_and_exports(tmp_path):
    torch.manual_seed(2)
    net = build_network("unet", {"width": 8, "depth": 2}, 3, 2, blur_radius=2, cooccurrence=torch.rand(3, 3),
                        prior_skip=True, context_radius=6, flip_average=True)
    x = torch.from_numpy(_inputs(np.random.default_rng(2), 2, 32))
    net.train()
    net(torch.nan_to_num(x))  # BatchNorm statistics away from their initial values
    net.eval()
    with torch.no_grad():
        plain = net._logits(x)
        averaged = net(x)
        for dims in ([-1], [-2], [-2, -1]):  # a flipped window gives the flipped prediction
            torch.testing.assert_close(net(x.flip(dims)).flip(dims), averaged, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(plain, averaged, atol=1e-4)  # a plain UNet is not: the average changes it
    path = tmp_path / "model.onnx"
    export_onnx(net, path, 10, size=32)
    rng = np.random.default_rng(6)
    for size, n in ((32, 1), (48, 4)):
        assert onnx_parity(net, path, _inputs(rng, n, size)) <= 1e-4


def test_unknown_skip_transform_is_a_clear_error():
    from model.config import config_from_dict

    with pytest.raises(ValueError, match="skip_transform must be one of"):
        config_from_dict({"models": {"unet": {"skip_transform": "sqrt"}}})
    with pytest.raises(ValueError, match="skip_transform must be"):
        build_network("unet", {"width": 4, "depth": 2}, 3, 2, blur_radius=2, skip_transform="sqrt")


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
