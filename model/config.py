"""The experiment configuration: typed dataclasses read from a YAML file, unknown keys rejected."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import yaml

from backend.cube.contract import UNSURVEYED_MODES

#: The name of the model ``m3 export`` ships (model.onnx): every configuration has a model of this name, and the
#: evaluation, protocol and reports compare the other methods with it.
EXPORTED_MODEL: Final = "unet"

#: The architecture name of the ResNet-encoder UNet (model.networks.NETWORKS), the default of every model.
UNET_ARCH: Final = "unet"

#: The masking regimes: some species hidden at visible cells, every species hidden in a region, or both.
Regime = Literal["species", "region", "mixed"]
REGIMES: Final[tuple[Regime, ...]] = ("species", "region", "mixed")
#: The regimes that hide whole regions (every species hidden in them).
REGION_REGIMES: Final[tuple[Regime, ...]] = ("region", "mixed")


@dataclass(frozen=True)
class DataConfig:
    """Where the cube is, which layers to use, and how it is cut into blocks and patches."""

    cube: str = "cube"
    species: tuple[str, ...] | None = None
    #: The covariates to feed, by name; None (the default) feeds all of the cube's, [] none of them.
    covariates: tuple[str, ...] | None = None
    block_cells: int = 64
    buffer_cells: int = 4
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    split_seed: int = 0
    min_block_coverage: float = 0.05
    patch_cells: int = 96
    #: Cells outside the surveyed states without a record: ``absent`` (visible zeros, a known absence) or
    #: ``unknown`` (hidden for that species in every input, never a training target; the model gets a
    #: surveyed-cells channel). Records there stay visible inputs either way.
    unsurveyed: str = "absent"


@dataclass(frozen=True)
class MaskConfig:
    """The masking generator: regime mix, the share of species or area hidden, region shapes."""

    regime_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    species_fraction: float = 0.5
    #: The share of species hidden in the mixed regime (with a region); None: species_fraction. The
    #: evaluation hides one species in the species regime and half of them in the mixed regime, which
    #: species_fraction ~0.1 and mixed_species_fraction 0.5 mirror.
    mixed_species_fraction: float | None = None
    region_fraction: float = 0.5
    region_min_cells: int = 8
    region_max_cells: int = 64
    #: The share of region-regime masks that hide the whole patch, every species and every cell: the view of a
    #: state without survey records, where only the covariates (and the coverage channel) are left to read.
    #: 0 never draws it (and draws no random number for it, so earlier configurations train as before).
    whole_patch: float = 0.0


@dataclass(frozen=True)
class LossConfig:
    """Loss weights: BCE, soft Dice and the soft-recall term, all on hidden training cells."""

    bce: float = 1.0
    dice: float = 0.1
    recall: float = 0.1
    pos_weight: float = 4.0
    #: Per-species positive weight (mean frequency / species frequency) ** species_balance on train cells:
    #: 0 weighs every species' positives alike; 0.5 lifts rare species (mean Dice is a macro average).
    species_balance: float = 0.0


@dataclass(frozen=True)
class ModelSpec:
    """One network to train: its architecture name, constructor parameters and optimiser schedule."""

    arch: str = UNET_ARCH
    params: dict[str, Any] = field(default_factory=dict)
    steps: int = 1000
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    prior_skip: bool = False
    #: Keep an exponential moving average of the weights (and BatchNorm statistics) with this decay per step,
    #: and make the average the trained model (0: the last weights). An average over the last ~1 / (1 - decay)
    #: steps is smoother than any one step's weights; the last weights are kept in the checkpoint too.
    ema_decay: float = 0.0
    #: This model's training regime mix (species, region, mixed); None: masking.regime_weights. An expert
    #: trained on one kind of hidden cell sets it (e.g. 1, 0, 0: species-hidden patches only).
    regime_weights: tuple[float, float, float] | None = None
    #: This model's own training masks: any keys of ``masking`` (e.g. ``species_fraction``), overriding the
    #: experiment's for this model's training only. The evaluation's cases always follow the experiment's.
    masking: dict[str, Any] = field(default_factory=dict)
    #: This model's own loss: any keys of ``loss`` (e.g. ``dice``, ``pos_weight``), overriding the
    #: experiment's for this model only; an expert of a gated model may train on another loss than its pair.
    loss: dict[str, Any] = field(default_factory=dict)
    #: With ``arch: gated``: the names of two other models of the configuration, (known, blind). The gated
    #: model is not trained itself; it is the two trained experts behind a per-cell gate: a cell where some
    #: species is visible takes the first expert's logits, a cell where every species is hidden the second's.
    experts: tuple[str, ...] = ()


#: The architecture name of a model made of two trained experts (ModelSpec.experts).
GATED = "gated"


@dataclass(frozen=True)
class TrainConfig:
    """Seeds, threads, prior settings and logging/checkpoint cadence shared by every model."""

    seeds: tuple[int, ...] = (0, 1, 2)
    threads: int = 1
    blur_radius: int = 4
    context_radius: int = 0
    log_every: int = 10
    checkpoint_every: int = 100
    #: Every this many steps (and at the last), score the network on the validation cases of every regime
    #: and keep the weights with the best score (the geometric mean over regimes of the mean AUPRC) as the
    #: model; 0 keeps the last weights. Test blocks are never looked at.
    select_every: int = 0


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation windows, seeds and baseline tuning grids."""

    margin_cells: int = 16
    seed: int = 1234
    #: Region and mixed cases per block. 0: one case that hides the whole block. k > 0: k cases, each
    #: hiding random rectangles inside the block drawn as the training masks draw them (masking.region_*
    #: sizes, about masking.region_fraction of the block), the rest of the block staying visible.
    region_draws: int = 0
    max_windows: int = 40
    min_window_cells: int = 200
    kriging_points: int = 150
    kriging_models: tuple[str, ...] = ("spherical", "exponential", "gaussian")
    kriging_tune_windows: int = 12
    neighbourhood_radii: tuple[int, ...] = (1, 2, 4, 8)
    neighbourhood_weights: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    success_fractions: tuple[float, ...] = (0.01, 0.05, 0.10, 0.20)
    batch_size: int = 16


@dataclass(frozen=True)
class ProtocolConfig:
    """The evaluation protocol (``m3 protocol``; docs/evaluation.md).

    A sealed test, K-fold spatial cross-validation, leave-one-state-out (LOSO) and the unsurveyed-state
    check. With it, ``m3 train`` trains on every fold, with the sealed test blocks hidden and their
    labels removed; only ``m3 evaluate --test`` opens the test blocks.
    """

    #: Number of cross-validation folds over the covered blocks that are not sealed.
    folds: int = 5
    #: Share of the covered blocks sealed as the test set, and the seed that draws them.
    test_fraction: float = 0.15
    test_seed: int = 20261201
    #: The stages ``m3 protocol`` runs, in this order.
    stages: tuple[str, ...] = ("cv", "loso", "unsurveyed")
    #: Folds of the cv stage to run (None: all); a quick configuration runs fewer.
    cv_folds: tuple[int, ...] | None = None
    #: States held out one at a time (postal codes; None: every state the coverage rule covers).
    loso_states: tuple[str, ...] | None = None
    #: The methods scored beside the configured networks (every one of them by default).
    baselines: tuple[str, ...] = ("neighbourhood", "kriging", "boosted", "roughness")
    #: Share of the unsurveyed cells the unsurveyed check scores (a seeded uniform sample, the same for every
    #: method: an unbiased estimate of its AUPRC and top-k shares at a fraction of the cost).
    unsurveyed_sample: float = 1.0
    #: Paired bootstrap resamples for every confidence interval.
    bootstrap: int = 1000
    #: Side of the square tiles (cells) that cover a held-out area; each tile is read with eval.margin_cells.
    tile_cells: int = 128
    #: Cells per species the gradient-boosted baseline trains on (all positives kept, negatives drawn).
    boosted_cells: int = 60000
    #: The gradient-boosted settings tuned over (max_iter, learning_rate, max_leaf_nodes); empty: the
    #: built-in grid (model.tabular.HGB_GRID).
    boosted_grid: tuple[dict[str, Any], ...] = ()
    #: Training windows drawn per regime (on train blocks) to tune and fit the baselines.
    tune_windows: int = 24
    #: The sealed test's scoring log warns once it holds this many scorings of a run.
    max_test_scorings: int = 2


PROTOCOL_STAGES = ("cv", "loso", "unsurveyed")
PROTOCOL_BASELINES = ("neighbourhood", "kriging", "boosted", "roughness")


@dataclass(frozen=True)
class ExperimentConfig:
    """The whole experiment: data, masking, loss, the models to train, training and evaluation."""

    name: str = "demo"
    data: DataConfig = field(default_factory=DataConfig)
    masking: MaskConfig = field(default_factory=MaskConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    models: dict[str, ModelSpec] = field(default_factory=lambda: {EXPORTED_MODEL: ModelSpec()})
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    protocol: ProtocolConfig | None = None

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON- and YAML-safe dict (tuples become lists)."""
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively, so YAML and JSON round-trip."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


#: Options no longer offered, with the value that disabled them: a run folder's config.yaml written before they
#: went records them (at these values for every shipped model); such a key is dropped, any other value is an error.
RETIRED_OPTIONS: dict[str, dict[str, Any]] = {
    "ModelSpec": {"skip_transform": "linear", "residual_init": False, "flip_average": False, "freeze_prior": False},
    "TrainConfig": {"extra_radii": [], "augment": False, "covariate_noise": 0.0},
}


#: Options added after protocol folders and caches were stamped, at the value that keeps the old behaviour:
#: a configuration with them at that value has the digest it had before they existed.
ADDED_OPTIONS: dict[str, dict[str, Any]] = {"data": {"unsurveyed": "absent"}, "masking": {"whole_patch": 0.0}}


def _drop_retired(cls: type, raw: dict[str, Any], where: str) -> dict[str, Any]:
    """``raw`` without the retired options of ``cls`` set to their disabling value; an error for any other value."""
    retired = RETIRED_OPTIONS.get(cls.__name__, {})
    for key in sorted(set(raw) & set(retired)):
        if _plain(raw[key]) != retired[key]:
            raise ValueError(f"{where}.{key} is no longer an option; only {retired[key]!r} (off) is accepted, "
                             f"got {raw[key]!r}")
    return {k: v for k, v in raw.items() if k not in retired}


def digest_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    """``cfg.to_dict()`` with the retired options at their off values: what digests and cached scores are keyed by.

    So a protocol folder stamped, or a score cached, before the options went still matches its configuration.
    """
    out = cfg.to_dict()
    for spec in out["models"].values():
        spec.update(_plain(RETIRED_OPTIONS["ModelSpec"]))
    out["train"].update(_plain(RETIRED_OPTIONS["TrainConfig"]))
    for section, defaults in ADDED_OPTIONS.items():  # newer options at their old behaviour: digests unchanged
        for key, value in defaults.items():
            if out[section].get(key) == value:
                del out[section][key]
    return out


def _build(cls: type, raw: dict[str, Any] | None, where: str) -> Any:
    """Build a dataclass from a dict, rejecting unknown keys with the allowed ones named."""
    raw = _drop_retired(cls, raw or {}, where)
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; allowed: {sorted(names)}")
    kwargs = {}
    for key, value in raw.items():
        default = getattr(cls(), key)
        kwargs[key] = tuple(value) if isinstance(default, tuple) or (default is None and isinstance(value, list)) \
            else value
    return cls(**kwargs)


def config_from_dict(raw: dict[str, Any]) -> ExperimentConfig:
    """Build and validate an ExperimentConfig from a parsed YAML mapping."""
    allowed = {"name", "data", "masking", "loss", "models", "train", "eval", "protocol"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ValueError(f"unknown top-level key(s) {unknown}; allowed: {sorted(allowed)}")
    models = {name: _build(ModelSpec, spec, f"models.{name}") for name, spec in (raw.get("models") or {}).items()}
    for name, spec in models.items():
        if not 0.0 <= spec.ema_decay < 1.0:
            raise ValueError(f"models.{name}.ema_decay must be in [0, 1); got {spec.ema_decay!r}")
        if spec.regime_weights is not None and (len(spec.regime_weights) != 3 or min(spec.regime_weights) < 0
                                                or sum(spec.regime_weights) <= 0):
            raise ValueError(f"models.{name}.regime_weights must be three non-negative weights (species, region, "
                             f"mixed) with a positive sum; got {list(spec.regime_weights)}")
        _check_experts(name, spec, models)
        _build(MaskConfig, spec.masking, f"models.{name}.masking")  # unknown keys rejected here
        _build(LossConfig, spec.loss, f"models.{name}.loss")
        if "regime_weights" in spec.masking:
            raise ValueError(f"models.{name}.masking: set the regime mix as models.{name}.regime_weights")
    if EXPORTED_MODEL not in models:
        raise ValueError(f"models must include {EXPORTED_MODEL!r} (the exported model); got {sorted(models)}")
    cfg = ExperimentConfig(
        name=str(raw.get("name", "demo")),
        data=_build(DataConfig, raw.get("data"), "data"),
        masking=_build(MaskConfig, raw.get("masking"), "masking"),
        loss=_build(LossConfig, raw.get("loss"), "loss"),
        models=models,
        train=_build(TrainConfig, raw.get("train"), "train"),
        eval=_build(EvalConfig, raw.get("eval"), "eval"),
        protocol=_build(ProtocolConfig, raw["protocol"], "protocol") if raw.get("protocol") is not None else None,
    )
    if cfg.protocol is not None:
        unknown_stages = sorted(set(cfg.protocol.stages) - set(PROTOCOL_STAGES))
        if unknown_stages:
            raise ValueError(f"protocol.stages {unknown_stages} unknown; known: {list(PROTOCOL_STAGES)}")
        if not 0.0 < cfg.protocol.unsurveyed_sample <= 1.0:
            raise ValueError(f"protocol.unsurveyed_sample must be in (0, 1]; got {cfg.protocol.unsurveyed_sample}")
        bad = sorted(set(cfg.protocol.baselines) - set(PROTOCOL_BASELINES))
        if bad:
            raise ValueError(f"protocol.baselines {bad} unknown; known: {list(PROTOCOL_BASELINES)}")
    if abs(sum(cfg.data.split_fractions) - 1.0) > 1e-6:
        raise ValueError(f"data.split_fractions must sum to 1; got {cfg.data.split_fractions}")
    if cfg.data.unsurveyed not in UNSURVEYED_MODES:
        raise ValueError(f"data.unsurveyed must be one of {list(UNSURVEYED_MODES)}; got {cfg.data.unsurveyed!r}")
    return cfg


def _check_experts(name: str, spec: ModelSpec, models: dict[str, ModelSpec]) -> None:
    """A gated model names two other, non-gated models of the configuration; no other model names any."""
    if spec.arch != GATED:
        if spec.experts:
            raise ValueError(f"models.{name}.experts is only for arch: {GATED}; got arch {spec.arch!r}")
        return
    if len(spec.experts) != 2:
        raise ValueError(f"models.{name}.experts must name two models (known, blind); got {list(spec.experts)}")
    for expert in spec.experts:
        if expert not in models or expert == name:
            raise ValueError(f"models.{name}.experts: {expert!r} is not another model of this configuration; "
                             f"configured: {sorted(models)}")
        if models[expert].arch == GATED:
            raise ValueError(f"models.{name}.experts: {expert!r} is itself gated")


def model_masking(cfg: ExperimentConfig, spec: ModelSpec) -> MaskConfig:
    """The training masks of one model: the experiment's, with the model's own regime mix and keys if it sets them."""
    regime = {} if spec.regime_weights is None else {"regime_weights": spec.regime_weights}
    masking: MaskConfig = _build(MaskConfig, cfg.masking.__dict__ | spec.masking | regime, "masking")
    return masking


def model_loss(cfg: ExperimentConfig, spec: ModelSpec) -> LossConfig:
    """The loss of one model: the experiment's, with the model's own keys if it sets any."""
    loss: LossConfig = _build(LossConfig, cfg.loss.__dict__ | spec.loss, "loss")
    return loss


def load_config(path: Path) -> ExperimentConfig:
    """Read a YAML experiment configuration."""
    with path.open(encoding="utf-8") as fh:
        raw = yaml.safe_load(fh) or {}
    return config_from_dict(raw)


def record_config(cfg: ExperimentConfig, source: Path, run_dir: Path) -> None:
    """Make a run folder and record what it trains (config.yaml, and the YAML as written), unless it already has."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / "config.yaml").exists():
        save_config(cfg, run_dir / "config.yaml")
        (run_dir / "config.source.yaml").write_bytes(source.read_bytes())


def save_config(cfg: ExperimentConfig, path: Path) -> None:
    """Write the configuration as YAML (the run folder's record of what was trained)."""
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=True), encoding="utf-8")
