"""Training one model for one seed: seeded, resumable, tqdm progress, CSV log and atomic checkpoints."""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from tqdm import tqdm

from backend.cube.contract import InputLayout
from model.channels import cooccurrence_matrix
from model.config import GATED, ExperimentConfig, LossConfig, model_loss, model_masking
from model.cube_data import CubeArrays, load_cube
from model.losses import masked_loss, species_weights
from model.masking import MaskGenerator
from model.networks import GatedExperts, M3Network, build_network
from model.patches import Batch, PatchSampler
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
    def layout(self) -> InputLayout:
        """The input channels the configured networks read (and export writes to model.json)."""
        return InputLayout.of(self.cube.species, self.cube.covariates, self.cfg.data.unsurveyed)

    @property
    def cooccurrence(self) -> np.ndarray:
        """P(s | j) over covered train cells (the prior baked into every network's stem)."""
        return cooccurrence_matrix(self.cube.labels, self.train_cells)


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
    extra = len(exp.layout.channels) - 2 * len(exp.cube.species) - 2 * len(exp.cube.covariates)
    return build_network(spec.arch, dict(spec.params), len(exp.cube.species), len(exp.cube.covariates),
                         exp.cfg.train.blur_radius, torch.from_numpy(exp.cooccurrence), prior_skip=spec.prior_skip,
                         context_radius=exp.cfg.train.context_radius, extra_channels=extra)


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
            per: dict[str, float] = {regime: mean_auprc(pool(cases, predict(cases), n_s))
                                     for regime, cases in self.cases.items()}
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


@dataclass(frozen=True)
class _ModelFiles:
    """Where one model's files live.

    The trained model (final.pt), the resumable state of an unfinished run (checkpoint.pt), the training log
    (log.csv, LOG_FIELDS) and the validation scores of the scored steps (selection.csv).
    """

    final: Path
    checkpoint: Path
    log: Path
    selection: Path

    @classmethod
    def under(cls, out: Path) -> _ModelFiles:
        """The files of a model folder."""
        return cls(out / "final.pt", out / "checkpoint.pt", out / "log.csv", out / "selection.csv")


@dataclass
class _Run:
    """The live state of one model's training: what a checkpoint stores and restores."""

    net: M3Network
    opt: torch.optim.Optimizer
    ema: torch.optim.swa_utils.AveragedModel | None
    rng: np.random.Generator
    selector: ValidationSelector | None
    device: torch.device
    step: int = 0

    @property
    def scored(self) -> M3Network:
        """What validation selection scores and the saved model is: the moving average if any, else the network."""
        return self.net if self.ema is None else cast(M3Network, self.ema.module)

    def learn(self, batch: Batch, lr: float, loss_cfg: LossConfig,
              weight: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, float]]:
        """One optimiser step at learning rate ``lr`` (and the moving average's update); (loss, its parts)."""
        for group in self.opt.param_groups:
            group["lr"] = lr
        x, y, mask = (torch.from_numpy(a).to(self.device) for a in (batch.x, batch.y, batch.loss_mask))
        loss, parts = masked_loss(self.net(x), y, mask, loss_cfg, weight)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.ema is not None:
            self.ema.update_parameters(self.net)
        self.step += 1
        return loss, parts

    def checkpoint(self, numpy_rng: Mapping[str, Any]) -> dict:
        """The resumable state, with the batch generator's state ``numpy_rng`` from before the next draw."""
        return {"model": self.net.state_dict(), "optimizer": self.opt.state_dict(), "step": self.step,
                "numpy_rng": numpy_rng, "torch_rng": torch.get_rng_state(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "selection": self.selector.state() if self.selector is not None else None}

    def restore(self, state: dict) -> None:
        """Continue from a :meth:`checkpoint`."""
        self.net.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"].cpu())
        self.step = int(state["step"])
        if self.selector is not None and state.get("selection"):
            self.selector.restore(state["selection"])

    def final_weights(self) -> tuple[dict[str, torch.Tensor], dict]:
        """(weights to save, extra checkpoint entries): the selected, else the averaged, else the last weights."""
        weights = {k: v.cpu() for k, v in self.net.state_dict().items()}
        extra: dict = {}
        if self.ema is not None:
            extra["last_weights"] = weights
            weights = {k: v.detach().cpu().clone() for k, v in self.ema.module.state_dict().items()}
        if self.selector is not None and self.selector.best_state is not None:
            weights = self.selector.best_state
            extra |= {"selected_step": self.selector.best_step, "validation_score": self.selector.best_score}
        return weights, extra


def train_model(exp: Experiment, arch: str, seed: int, run_dir: Path, progress: bool = True) -> Path:
    """Train (or resume) one architecture for one seed; return the final checkpoint path.

    Runs on CUDA when available (the paper config), else on CPU, where it is bit-for-bit deterministic.
    With ``train.select_every`` the saved model is the validation-best of the scored steps
    (``selection.csv`` logs every score). With the model's ``ema_decay`` the saved model is the moving
    average of the weights (the last weights are kept under ``last_weights``), and selection scores the average.
    """
    if exp.cfg.models[arch].arch == GATED:
        return _compose_gated(exp, arch, seed, run_dir, progress)
    torch.set_num_threads(exp.cfg.train.threads)
    torch.manual_seed(seed)
    files = _ModelFiles.under(model_dir(run_dir, arch, seed))
    files.final.parent.mkdir(parents=True, exist_ok=True)
    if files.final.exists():
        log.info("%s seed %d already trained (%s)", arch, seed, files.final)
        return files.final
    run = _new_run(exp, arch, seed, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    _resume_or_restart(run, files, f"{arch} seed {seed}")
    _train_steps(exp, arch, run, files, f"{arch} seed {seed}", progress)
    weights, extra = run.final_weights()
    if "selected_step" in extra:
        log.info("%s seed %d: keeping the weights of step %d (validation score %.4f)", arch, seed,
                 extra["selected_step"], extra["validation_score"])
    _save_atomic({"model": weights, "arch": arch, "seed": seed, "step": run.step, "config": exp.cfg.to_dict(),
                  **extra}, files.final)
    files.checkpoint.unlink(missing_ok=True)
    log.info("trained %s seed %d: %d steps -> %s", arch, seed, run.step, files.final)
    return files.final


def _new_run(exp: Experiment, arch: str, seed: int, device: torch.device) -> _Run:
    """A fresh network (on ``device``), its optimiser, moving average, seeded batch generator and selector."""
    spec = exp.cfg.models[arch]
    net = cast(M3Network, new_network(exp, arch)).to(device)
    trainable = [p for p in net.parameters() if p.requires_grad]  # a frozen prior is left out
    opt = torch.optim.AdamW(trainable, lr=spec.lr, weight_decay=spec.weight_decay)
    ema = new_ema(net, spec.ema_decay)
    rng = np.random.default_rng(seed)
    selector = ValidationSelector(exp) if exp.cfg.train.select_every > 0 else None
    return _Run(net, opt, ema, rng, selector, device)


def _resume_or_restart(run: _Run, files: _ModelFiles, name: str) -> None:
    """Continue from the checkpoint if there is one (its logs cut back to its step), else delete stale logs."""
    if files.checkpoint.exists():
        run.restore(torch.load(files.checkpoint, weights_only=False, map_location=run.device))
        for path in (files.log, files.selection):  # rows written after the checkpoint are written again
            _truncate_log(path, run.step)
        log.info("resuming %s at step %d", name, run.step)
    else:
        files.log.unlink(missing_ok=True)
        files.selection.unlink(missing_ok=True)


def _positive_weight(exp: Experiment, loss_cfg: LossConfig, device: torch.device) -> torch.Tensor | None:
    """Per-species weights of the positive cells (None without ``species_balance``)."""
    if not loss_cfg.species_balance:
        return None
    w = species_weights(exp.cube.labels, exp.train_cells, loss_cfg.species_balance)
    log.info("species positive weights: %s", dict(zip(exp.cube.species, np.round(w, 2).tolist(), strict=True)))
    return torch.from_numpy(w).to(device)


def _train_steps(exp: Experiment, arch: str, run: _Run, files: _ModelFiles, name: str, progress: bool) -> None:
    """Train the remaining steps of one model.

    A log row every ``log_every`` steps, a validation score every ``select_every`` and a checkpoint every
    ``checkpoint_every`` steps; the last step is logged and scored too.
    """
    cfg, spec = exp.cfg, exp.cfg.models[arch]
    sampler = PatchSampler(exp.cube, exp.split, MaskGenerator(model_masking(cfg, spec), len(exp.cube.species)),
                           cfg.data.patch_cells, exp.layout)
    loss_cfg = model_loss(cfg, spec)
    weight = _positive_weight(exp, loss_cfg, run.device)
    select_every = cfg.train.select_every
    bar = tqdm(total=spec.steps, initial=run.step, desc=name, unit="step", disable=None if progress else True)
    with _training_log(files.log) as write_row, bar, \
            closing(_prefetched(sampler, run.rng, spec.batch_size, run.step, spec.steps)) as batches:
        run.net.train()
        started = time.perf_counter()
        for batch, numpy_rng in batches:
            lr = _lr(run.step, spec.steps, spec.lr, spec.warmup_steps)
            loss, parts = run.learn(batch, lr, loss_cfg, weight)
            bar.update(1)
            last = run.step == spec.steps
            if run.step % cfg.train.log_every == 0 or last:
                write_row(_log_row(run.step, float(loss.detach()), lr, time.perf_counter() - started, parts))
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
            if run.selector is not None and (run.step % select_every == 0 or last):
                _log_selection(files.selection, run.step, *run.selector.update(run.scored, run.step))
            if run.step % cfg.train.checkpoint_every == 0 and not last:
                _save_atomic(run.checkpoint(numpy_rng), files.checkpoint)


def _prefetched(sampler: PatchSampler, rng: np.random.Generator, size: int, step: int,
                steps: int) -> Generator[tuple[Batch, Mapping[str, Any]], None, None]:
    """The batches of steps ``step``..``steps`` - 1, each with the generator's state from before the next draw.

    The next batch is drawn in a background thread while a step runs (on a GPU the numpy sampler was two
    thirds of a step); batches come in the same order from the same generator as drawn one after another.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="m3-batches") as prefetch:
        pending = prefetch.submit(sampler.batch, rng, size) if step < steps else None
        while pending is not None:
            batch = pending.result()
            state = rng.bit_generator.state  # the generator is idle between two draws
            step += 1
            pending = prefetch.submit(sampler.batch, rng, size) if step < steps else None
            yield batch, state


@contextmanager
def _training_log(path: Path) -> Iterator[Callable[[dict], None]]:
    """A function that appends a row to the CSV training log (a header first when new) and flushes it."""
    new_log = not path.exists()
    with path.open("a", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
        if new_log:
            writer.writeheader()

        def write(row: dict) -> None:
            writer.writerow(row)
            fh.flush()

        yield write


def _log_row(step: int, loss: float, lr: float, seconds: float, parts: dict[str, float]) -> dict:
    """One row of the training log, rounded."""
    return {"step": step, "loss": round(loss, 6), "lr": round(lr, 8), "seconds": round(seconds, 2),
            **{k: round(v, 6) for k, v in parts.items()}}


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
