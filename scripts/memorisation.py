"""Does a trained network rank hidden cells of the train blocks better than those of held-out blocks?

(docs/model-experiments.md, "Memorisation".) Scores trained runs on region-hidden cases (the whole
64-cell block hidden, the evaluation's region regime) cut from train blocks and from validation blocks,
and prints each run's mean AUPRC over species on both. A network that generalises gains on both as it
trains; one that learns where deposits lie in the train blocks gains on train blocks only. Test blocks
are never looked at.

    .venv/bin/python scripts/memorisation.py RUN [RUN ...] [--seed 0] [--windows 40] [--case-seed 7]
        [--regime region|species|mixed]

Each RUN is a run folder of `m3 train` (its `config.yaml` says the cube and inputs) with a UNet seed:
its `final.pt`, or the latest `checkpoint.pt` while it still trains.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.config import load_config  # noqa: E402
from model.evaluate import mean_auprc, network_predictor, pool  # noqa: E402
from model.masking import MaskGenerator  # noqa: E402
from model.patches import evaluation_cases  # noqa: E402
from model.train import model_dir, new_network, open_experiment  # noqa: E402


def main() -> None:
    """Print train-block and validation-block AUPRC of each run in one regime."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--arch", default="unet")
    parser.add_argument("--seed", type=int, default=0, help="the training seed to score")
    parser.add_argument("--windows", type=int, default=40, help="blocks per split (at most)")
    parser.add_argument("--case-seed", type=int, default=7, help="seed of the block draw")
    parser.add_argument("--regime", default="region", choices=["species", "region", "mixed"],
                        help="the evaluation regime of the cases (region: the whole block hidden)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"| run | step | train blocks: {args.regime} AUPRC | validation blocks: {args.regime} AUPRC |")
    print("| --- | --- | --- | --- |")
    for run in args.runs:
        cfg = load_config(run / "config.yaml")
        exp = open_experiment(cfg, Path.cwd())
        folder = model_dir(run, args.arch, args.seed)
        path = folder / "final.pt" if (folder / "final.pt").exists() else folder / "checkpoint.pt"
        if not path.exists():
            raise SystemExit(f"{folder} has neither final.pt nor checkpoint.pt")
        checkpoint = torch.load(path, weights_only=False, map_location="cpu")
        net = new_network(exp, args.arch)
        net.load_state_dict(checkpoint["model"])
        predict = network_predictor(exp, net.eval())
        masks = MaskGenerator(cfg.masking, len(exp.cube.species))
        scores = []
        for split in ("train", "val"):
            cases = evaluation_cases(exp.cube, exp.split, split, args.regime, margin=cfg.eval.margin_cells,
                                     seed=args.case_seed, max_windows=args.windows,
                                     min_cells=cfg.eval.min_window_cells, masks=masks)
            scores.append(mean_auprc(pool(cases, predict(cases), len(exp.cube.species))))
        print(f"| {run} | {checkpoint.get('step')} | {scores[0]:.4f} | {scores[1]:.4f} |", flush=True)


if __name__ == "__main__":
    main()
