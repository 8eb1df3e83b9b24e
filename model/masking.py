"""The masking generator: which species layers and which regions are hidden (to be predicted)."""

from __future__ import annotations

import numpy as np

from model.config import REGIMES, REGION_REGIMES, MaskConfig, Regime


class MaskGenerator:
    """Hide whole species layers, contiguous regions across all species, or both (training masks)."""

    def __init__(self, cfg: MaskConfig, n_species: int) -> None:
        self.cfg = cfg
        self.n_species = n_species
        weights = np.asarray(cfg.regime_weights, dtype=float)
        if weights.shape != (3,) or weights.sum() <= 0:
            raise ValueError(f"masking.regime_weights must be three non-negative weights for {REGIMES}")
        if not 0.0 <= cfg.whole_patch <= 1.0:
            raise ValueError(f"masking.whole_patch must be a share in [0, 1]; got {cfg.whole_patch}")
        self.regime_p = weights / weights.sum()

    def hidden_species(self, rng: np.random.Generator, fraction: float | None = None) -> np.ndarray:
        """A boolean (S,) draw of hidden species, each with probability ``fraction``, at least one.

        ``fraction`` defaults to species_fraction.
        """
        hide = rng.random(self.n_species) < (self.cfg.species_fraction if fraction is None else fraction)
        if not hide.any():
            hide[rng.integers(self.n_species)] = True
        return hide

    def hidden_region(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        """A boolean (H, W) union of random rectangles covering about region_fraction of the window."""
        h, w = shape
        region = np.zeros(shape, dtype=bool)
        lo, hi = self.cfg.region_min_cells, max(self.cfg.region_min_cells, self.cfg.region_max_cells)
        for _ in range(64):
            if region.mean() >= self.cfg.region_fraction:
                break
            rh, rw = (int(v) for v in rng.integers(lo, hi + 1, size=2))
            rh, rw = min(rh, h), min(rw, w)
            r0, c0 = int(rng.integers(0, h - rh + 1)), int(rng.integers(0, w - rw + 1))
            region[r0:r0 + rh, c0:c0 + rw] = True
        return region

    def sample(self, rng: np.random.Generator, shape: tuple[int, int]) -> tuple[Regime, np.ndarray]:
        """One training mask: the regime drawn and the hidden cells (S, H, W) bool."""
        regime = REGIMES[int(rng.choice(3, p=self.regime_p))]
        hidden = np.zeros((self.n_species, *shape), dtype=bool)
        if regime == "species":
            hidden[self.hidden_species(rng)] = True
        elif regime == "mixed":
            hidden[self.hidden_species(rng, self.cfg.mixed_species_fraction)] = True
        if regime == "region" and self.cfg.whole_patch > 0 and rng.random() < self.cfg.whole_patch:
            hidden[:] = True  # nothing visible: the patch reads as a state without records
        elif regime in REGION_REGIMES:
            hidden |= self.hidden_region(rng, shape)[None]
        return regime, hidden


def _regions_in_block(core: np.ndarray, masks: MaskGenerator, draws: int,
                      rng: np.random.Generator) -> list[np.ndarray]:
    """``draws`` (H, W) masks, each random rectangles (as in training) inside the bounding box of ``core``."""
    rows, cols = np.nonzero(core)
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    out = []
    for _ in range(draws):
        region = np.zeros_like(core)
        region[r0:r1, c0:c1] = masks.hidden_region(rng, (int(r1 - r0), int(c1 - c0)))
        out.append(region & core)
    return out


def evaluation_masks(regime: Regime, core: np.ndarray, n_species: int, rng: np.random.Generator,
                     masks: MaskGenerator | None = None, draws: int = 0) -> list[tuple[np.ndarray, list[int]]]:
    """The fixed evaluation masks of one window: (hidden (S, H, W), target species) pairs.

    species: one case per species, that layer hidden over the whole window, the others visible;
    region: the block core hidden for every species; mixed: the core hidden for every species plus
    a random half of the species hidden over the whole window. With ``draws`` > 0 (and the training
    mask generator ``masks``), region and mixed give ``draws`` cases that hide random rectangles inside
    the core instead of all of it.
    """
    shape = core.shape
    if regime == "species":
        cases = []
        for s in range(n_species):
            hidden = np.zeros((n_species, *shape), dtype=bool)
            hidden[s] = True
            cases.append((hidden, [s]))
        return cases
    if regime not in REGION_REGIMES:
        raise ValueError(f"regime {regime!r} is unknown; known: {', '.join(REGIMES)}")
    if draws > 0:
        if masks is None:
            raise ValueError("region draws need the training mask generator")
        regions = _regions_in_block(core, masks, draws, rng)
    else:
        regions = [core]
    cases = []
    for region in regions:
        hidden = np.repeat(region[None], n_species, axis=0)
        if regime == "mixed":
            chosen = rng.permutation(n_species)[: max(1, n_species // 2)]
            hidden[chosen] = True
        cases.append((hidden, list(range(n_species))))
    return cases
