"""Training one model for one seed: seeded, resumable, tqdm progress, CSV log and atomic checkpoints."""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
from tqdm import tqdm

from model.channels import cooccurrence_matrix
from model.config import GATED, ExperimentConfig, model_loss, model_masking
from model.cube_data import CubeArrays, load_cube
from model.losses import masked_loss, species_weights
from model.masking import MaskGenerator
from model.networks import GatedExperts, M3Network, build_network
from model.patches import PatchSampler
from model.splits import TRAIN, BlockSplit, fold_split, make_block_split

log = logging.getLogger(__name__)

LOG_FIELDS = ["step", "loss", "bce", "dice", "recall", "lr", "seconds"]


@dataclass
class Experiment:
    """The loaded cube and its split for one configuration (shared by training and evaluation)."""

    cfg: ExperimentConfig
    cube: CubeArrays
    split: BlockSplit

    @property
    def train_cells(self) -> np.ndarray:
        """(H, W) bool: the covered cells of train blocks."""
        return (self.split.cell_split == TRAIN) & self.cube.coverage

    @property
    def cooccurrence(self) -> np.ndarray:
        """P(s | j) over covered train cells (the prior baked into every network's stem)."""
        return cooccurrence_matrix(self.cube.labels, self.train_cells)

    @property
    def base_logit(self) -> np.ndarray:
        """(S,) float32 logit of each species' share of covered train cells (clipped away from 0 and 1)."""
        share = self.cube.labels[:, self.train_cells].mean(axis=1, dtype=np.float64)
        share = np.clip(share, 1e-5, 1 - 1e-5)
        return np.log(share / (1 - share)).astype(np.float32)


def open_experiment(cfg: ExperimentConfig, base: Path | None = None, cube: CubeArrays | None = None,
                    test: bool = False) -> Experiment:
    """Load the cube named by the config (relative to ``base``) and make the block split.

    With a ``protocol`` section the split is the protocol's: every fold trains (the final model) and the
    sealed test blocks are cut from the cube (labels removed, cells hidden); ``test`` opens them as TEST
    instead, for ``m3 evaluate --test`` alone.
    """
    if cube is None:
        cube_dir = Path(cfg.data.cube)
        if not cube_dir.is_absolute() and base is not None:
            cube_dir = base / cube_dir
        cube = load_cube(cube_dir, list(cfg.data.species) if cfg.data.species else None,
                         list(cfg.data.covariates) if cfg.data.covariates is not None else None)
    d = cfg.data
    if cfg.protocol is not None:
        from model.protocol import folds_of, sealed_view

        folds = folds_of(cfg, cube)
        if test:
            return Experiment(cfg, cube, fold_split(folds, None, seal=False))
        return Experiment(cfg, sealed_view(cube, folds), fold_split(folds, None, seal=True))
    if test:
        raise ValueError("the sealed test needs a protocol section in the configuration")
    split = make_block_split(cube.coverage, d.block_cells, d.buffer_cells, d.split_fractions, d.split_seed,
                             d.min_block_coverage)
    return Experiment(cfg, cube, split)


def new_network(exp: Experiment, arch: str) -> M3Network | GatedExperts:
    """The untrained network of one configured model (a gated model: its two untrained experts)."""
    spec = exp.cfg.models[arch]
    if spec.arch == GATED:
        known, blind = (cast(M3Network, new_network(exp, name)) for name in spec.experts)
        return GatedExperts(known, blind)
    base_logit = torch.from_numpy(exp.base_logit) if spec.residual_init else None
    net = build_network(spec.arch, dict(spec.params), len(exp.cube.species), len(exp.cube.covariates),
                         exp.cfg.train.blur_radius, torch.from_numpy(exp.cooccurrence), prior_skip=spec.prior_skip,
                         context_radius=exp.cfg.train.context_radius, extra_radii=exp.cfg.train.extra_radii,
                         skip_transform=spec.skip_transform, base_logit=base_logit,
                         flip_average=spec.flip_average)
    if spec.freeze_prior:
        net.freeze_prior()
    return net


def new_ema(net: torch.nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel | None:
    """The moving average of ``net``'s weights and BatchNorm statistics (None for decay 0), updated each step."""
    if decay <= 0:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def model_dir(run_dir: Path, arch: str, seed: int) -> Path:
    """Where one model's checkpoints and log live."""
    return run_dir / arch / f"seed-{seed}"


def _lr(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up then cosine decay to 5% of the base rate."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def _save_atomic(payload: dict, path: Path) -> None:
    """torch.save to a temporary name, then rename (never a half-written checkpoint)."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


class ValidationSelector:
    """Scores a network on the validation cases of every regime; remembers the best weights.

    The score is the geometric mean over regimes of the mean (over species) AUPRC, so a regime whose
    AUPRC is near 0.02 (whole regions hidden) weighs as much as one near 0.3 (whole species hidden).
    """

    def __init__(self, exp: Experiment) -> None:
        from model.evaluate import evaluation_sets

        self.exp = exp
        self.cases = {s.regime: s.val for s in evaluation_sets(exp)}
        self.best_score = -math.inf
        self.best_step = 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def score(self, net: M3Network) -> tuple[float, dict[str, float]]:
        """(score, per-regime mean AUPRC) of the network as it is now (left in train mode)."""
        from model.evaluate import mean_auprc, network_predictor, pool

        n_s = len(self.exp.cube.species)
        net.eval()
        try:
            predict = network_predictor(self.exp, net)
            per = {regime: mean_auprc(pool(cases, predict(cases), n_s)) for regime, cases in self.cases.items()}
        finally:
            net.train()
        values = [v for v in per.values() if math.isfinite(v)]
        score = float(np.mean(np.log(np.maximum(values, 1e-9)))) if values else -math.inf
        return score, per

    def update(self, net: M3Network, step: int) -> tuple[float, dict[str, float]]:
        """Score the network; keep a CPU copy of its weights if it is the best so far."""
        score, per = self.score(net)
        if score > self.best_score:
            self.best_score, self.best_step = score, step
            self.best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        return score, per

    def state(self) -> dict:
        """What a checkpoint stores to resume the selection."""
        return {"score": self.best_score, "step": self.best_step, "weights": self.best_state}

    def restore(self, state: dict) -> None:
        """Resume from a checkpoint's :meth:`state`."""
        self.best_score, self.best_step, self.best_state = state["score"], state["step"], state["weights"]


def train_model(exp: Experiment, arch: str, seed: int, run_dir: Path, progress: bool = True) -> Path:
    """Train (or resume) one architecture for one seed; return the final checkpoint path.

    Runs on CUDA when available (the paper config), else on CPU, where it is bit-for-bit deterministic.
    With ``train.select_every`` the saved model is the validation-best of the scored steps
    (``selection.csv`` logs every score). With the model's ``ema_decay`` the saved model is the moving
    average of the weights (the last weights are kept under ``last_weights``), and selection scores the average.
    """
    cfg, spec = exp.cfg, exp.cfg.models[arch]
    if spec.arch == GATED:
        return _compose_gated(exp, arch, seed, run_dir, progress)
    torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(seed)
    out = model_dir(run_dir, arch, seed)
    out.mkdir(parents=True, exist_ok=True)
    final, ckpt_path, log_path = out / "final.pt", out / "checkpoint.pt", out / "log.csv"
    if final.exists():
        log.info("%s seed %d already trained (%s)", arch, seed, final)
        return final
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = cast(M3Network, new_network(exp, arch)).to(device)
    trainable = [p for p in net.parameters() if p.requires_grad]  # a frozen prior is left out
    opt = torch.optim.AdamW(trainable, lr=spec.lr, weight_decay=spec.weight_decay)
    ema = new_ema(net, spec.ema_decay)
    rng = np.random.default_rng(seed)
    step = 0
    select_every = cfg.train.select_every
    selector = ValidationSelector(exp) if select_every > 0 else None
    selection_path = out / "selection.csv"
    if ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=False, map_location=device)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"].cpu())
        step = int(state["step"])
        if selector is not None and state.get("selection"):
            selector.restore(state["selection"])
        for path in (log_path, selection_path):  # rows written after the checkpoint are written again
            _truncate_log(path, step)
        log.info("resuming %s seed %d at step %d", arch, seed, step)
    else:
        log_path.unlink(missing_ok=True)
        selection_path.unlink(missing_ok=True)
    sampler = PatchSampler(exp.cube, exp.split, MaskGenerator(model_masking(cfg, spec), len(exp.cube.species)),
                           cfg.data.patch_cells, augment=cfg.train.augment, covariate_noise=cfg.train.covariate_noise)
    weight = None
    loss_cfg = model_loss(cfg, spec)
    if loss_cfg.species_balance:
        w = species_weights(exp.cube.labels, exp.train_cells, loss_cfg.species_balance)
        log.info("species positive weights: %s", dict(zip(exp.cube.species, np.round(w, 2).tolist(), strict=True)))
        weight = torch.from_numpy(w).to(device)
    new_log = not log_path.exists()
    with log_path.open("a", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
        if new_log:
            writer.writeheader()
        net.train()
        # what validation selection scores and the model keeps
        scored = net if ema is None else cast(M3Network, ema.module)
        started = time.perf_counter()
        bar = tqdm(total=spec.steps, initial=step, desc=f"{arch} seed {seed}", unit="step",
                   disable=None if progress else True)
        # the next batch is drawn in a background thread while this step runs (on a GPU the numpy
        # sampler was two thirds of a step); batches come in the same order from the same generator,
        # and a checkpoint stores the generator's state from before the batch being drawn
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="m3-batches") as prefetch:
            next_state = rng.bit_generator.state
            pending = prefetch.submit(sampler.batch, rng, spec.batch_size) if step < spec.steps else None
            while step < spec.steps:
                lr = _lr(step, spec.steps, spec.lr, spec.warmup_steps)
                for group in opt.param_groups:
                    group["lr"] = lr
                assert pending is not None
                batch = pending.result()
                next_state = rng.bit_generator.state  # the generator is idle between two draws
                pending = prefetch.submit(sampler.batch, rng, spec.batch_size) if step + 1 < spec.steps else None
                x, y, mask = (torch.from_numpy(a).to(device) for a in (batch.x, batch.y, batch.loss_mask))
                loss, parts = masked_loss(net(x), y, mask, loss_cfg, weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if ema is not None:
                    ema.update_parameters(net)
                step += 1
                bar.update(1)
                if step % cfg.train.log_every == 0 or step == spec.steps:
                    writer.writerow({"step": step, "loss": round(float(loss.detach()), 6), "lr": round(lr, 8),
                                     "seconds": round(time.perf_counter() - started, 2),
                                     **{k: round(v, 6) for k, v in parts.items()}})
                    fh.flush()
                    bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
                if selector is not None and (step % select_every == 0 or step == spec.steps):
                    _log_selection(selection_path, step, *selector.update(scored, step))
                if step % cfg.train.checkpoint_every == 0 and step < spec.steps:
                    _save_atomic({"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step,
                                  "numpy_rng": next_state, "torch_rng": torch.get_rng_state(),
                                  "ema": ema.state_dict() if ema is not None else None,
                                  "selection": selector.state() if selector is not None else None}, ckpt_path)
            bar.close()
    weights = {k: v.cpu() for k, v in net.state_dict().items()}
    extra: dict = {}
    if ema is not None:
        extra["last_weights"] = weights
        weights = {k: v.detach().cpu().clone() for k, v in ema.module.state_dict().items()}
    if selector is not None and selector.best_state is not None:
        weights = selector.best_state
        extra |= {"selected_step": selector.best_step, "validation_score": selector.best_score}
        log.info("%s seed %d: keeping the weights of step %d (validation score %.4f)", arch, seed,
                 selector.best_step, selector.best_score)
    _save_atomic({"model": weights, "arch": arch, "seed": seed, "step": step, "config": cfg.to_dict(), **extra}, final)
    ckpt_path.unlink(missing_ok=True)
    log.info("trained %s seed %d: %d steps -> %s", arch, seed, step, final)
    return final


def _truncate_log(path: Path, step: int) -> None:
    """Drop the rows of a CSV log (first column: step) after ``step``."""
    if not path.exists():
        return
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    kept = rows[:1] + [r for r in rows[1:] if r and int(float(r[0])) <= step]
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(kept)
    os.replace(tmp, path)


def _log_selection(path: Path, step: int, score: float, per: dict[str, float]) -> None:
    """Append one validation score to selection.csv."""
    new = not path.exists()
    with path.open("a", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        if new:
            writer.writerow(["step", "score", *(f"val_auprc_{r}" for r in per)])
        writer.writerow([step, round(score, 6), *(round(v, 6) for v in per.values())])


def _compose_gated(exp: Experiment, arch: str, seed: int, run_dir: Path, progress: bool) -> Path:
    """Train (or resume) a gated model's two experts for this seed; save the gated model made of them."""
    spec = exp.cfg.models[arch]
    final = model_dir(run_dir, arch, seed) / "final.pt"
    parts = [train_model(exp, name, seed, run_dir, progress) for name in spec.experts]
    known, blind = (cast(M3Network, load_trained(exp, name, path)) for name, path in zip(spec.experts, parts,
                                                                                          strict=True))
    net = GatedExperts(known, blind)
    final.parent.mkdir(parents=True, exist_ok=True)
    _save_atomic({"model": net.state_dict(), "experts": {name: str(p) for name, p in zip(spec.experts, parts,
                                                                                               strict=True)}}, final)
    log.info("%s seed %d: the gated model of %s", arch, seed, " and ".join(spec.experts))
    return final


def load_trained(exp: Experiment, arch: str, path: Path) -> M3Network | GatedExperts:
    """A trained network from its final checkpoint, in eval mode."""
    net = new_network(exp, arch)
    net.load_state_dict(torch.load(path, weights_only=False, map_location="cpu")["model"])
    return net.eval()
