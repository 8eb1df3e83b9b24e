"""How much signal is there inside a hidden 64-cell block? (docs/model-experiments.md, "Where the region signal is")

Scores simple features on the region- and mixed-hidden evaluation cases of a configuration (the same cases
`m3 evaluate` uses): the visible same-species and any-species densities at several radii and each raw
covariate, then a logistic model in the log densities (all radii, same-species, any-species and co-occurrence
prior) plus the covariates and a per-species intercept, fitted on region and mixed training masks drawn
from train blocks only. Prints validation AUPRC, and test Dice (threshold from validation) and AUPRC,
each a mean over species, like the report.

    .venv/bin/python scripts/region_signal.py --config configs/demo.yaml [--patches 600]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.baselines import neighbourhood_density  # noqa: E402
from model.config import load_config  # noqa: E402
from model.evaluate import evaluation_sets, pool, summarise  # noqa: E402
from model.masking import MaskGenerator  # noqa: E402
from model.patches import PatchSampler  # noqa: E402
from model.train import open_experiment  # noqa: E402

RADII = (4, 8, 16, 32, 64)


def features(labels: np.ndarray, hidden: np.ndarray, cov: np.ndarray, co: np.ndarray,
             names: list[str]) -> dict[str, np.ndarray]:
    """Named (S, H, W) features of one window."""
    s = labels.shape[0]
    known = (~hidden).astype(np.float64)
    visible = np.where(hidden, 0, labels).astype(np.float64)
    any_visible, any_known = visible.max(0), known.max(0)
    prior = np.einsum("sj,jhw->shw", co, visible)
    out = {}
    for r in RADII:
        out[f"same-species density r={r}"] = neighbourhood_density(visible, known, r)
        out[f"any-species density r={r}"] = np.repeat(neighbourhood_density(any_visible, any_known, r)[None], s, 0)
        out[f"prior density r={r}"] = neighbourhood_density(prior, np.repeat(any_known[None], s, 0), r)
    for k, name in enumerate(names):
        out[f"covariate {name}"] = np.repeat(np.nan_to_num(cov[k])[None], s, 0)
    return out


def design(f: dict[str, np.ndarray], s: int) -> np.ndarray:
    """(S, H, W, F) logistic inputs: log densities, covariates, one-hot species."""
    cols = [np.log(v + 1e-3) if "density" in k else v for k, v in f.items()]
    onehot = np.broadcast_to(np.eye(s)[:, None, None, :], (*cols[0].shape, s))
    return np.concatenate([np.stack(cols, -1), onehot], -1)


def main() -> None:
    """Fit the logistic model and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/demo.yaml"))
    parser.add_argument("--patches", type=int, default=600, help="training windows for the logistic model")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cfg = load_config(args.config)
    exp = open_experiment(cfg, base=Path.cwd())
    cube, s, co = exp.cube, len(exp.cube.species), exp.cooccurrence.astype(np.float64)
    fractions = tuple(cfg.eval.success_fractions)

    def case_features(case):  # noqa: ANN001, ANN202
        (r0, c0), (h, w) = case.origin, case.labels.shape[1:]
        return features(case.labels, case.hidden, cube.cov[:, r0:r0 + h, c0:c0 + w], co, cube.covariates)

    rng = np.random.default_rng(args.seed)
    masks = MaskGenerator(dataclasses.replace(cfg.masking, regime_weights=(0.0, 1.0, 1.0)), s)
    sampler = PatchSampler(cube, exp.split, masks, cfg.data.patch_cells)
    xs, ys = [], []
    for _ in range(args.patches):
        x, y, m = sampler.patch(rng)
        hidden = x[s:2 * s] > 0
        d = design(features(y.astype(np.uint8), hidden, x[2 * s:2 * s + len(cube.covariates)], co,
                            cube.covariates), s)
        xs.append(d[m > 0])
        ys.append(y[m > 0])
    x_all, y_all = np.concatenate(xs), np.concatenate(ys)
    keep = rng.permutation(len(y_all))[:400_000]
    xt, yt = torch.tensor(x_all[keep]), torch.tensor(y_all[keep], dtype=torch.float64)
    mu, sd = xt.mean(0), xt.std(0) + 1e-6
    mu[-s:], sd[-s:] = 0, 1
    weights = torch.zeros(xt.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([weights], max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(((xt - mu) / sd) @ weights, yt)
        loss = loss + 1e-4 * (weights ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    print(f"logistic model fitted on {len(keep)} hidden train cells of {args.patches} windows")

    def logistic(case):  # noqa: ANN001, ANN202
        d = torch.tensor(design(case_features(case), s))
        return (((d - mu) / sd) @ weights).detach().numpy()

    for regime_set in evaluation_sets(exp):
        if regime_set.regime == "species":
            continue
        val_f = [case_features(c) for c in regime_set.val]
        test_f = [case_features(c) for c in regime_set.test]
        rows = []
        for name in val_f[0]:
            val = pool(regime_set.val, (f[name] for f in val_f), s)
            test = pool(regime_set.test, (f[name] for f in test_f), s)
            rows.append((name, summarise(val, test, cube.species, fractions)["mean"]))
        val = pool(regime_set.val, (logistic(c) for c in regime_set.val), s)
        test = pool(regime_set.test, (logistic(c) for c in regime_set.test), s)
        rows.append(("logistic model (all of the above)", summarise(val, test, cube.species, fractions)["mean"]))
        print(f"\n{regime_set.regime} hidden: {len(regime_set.test)} test cases")
        print(f"{'feature':<36} {'val AUPRC':>9} {'test Dice':>9} {'test AUPRC':>10}")
        for name, m in sorted(rows, key=lambda r: -r[1]["val_auprc"]):
            print(f"{name:<36} {m['val_auprc']:9.4f} {m['dice']:9.4f} {m['auprc']:10.4f}")


if __name__ == "__main__":
    main()
