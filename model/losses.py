"""The training loss on hidden cells: weighted BCE + soft Dice + a soft-recall term."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from model.config import LossConfig


def masked_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                cfg: LossConfig, species_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The total loss and its parts, computed only where ``mask`` is 1 (hidden, covered, train cells).

    BCE weighs positives by ``pos_weight``; soft Dice and soft recall are pooled over the batch
    (per-cell Dice is meaningless for targets this sparse). ``species_weight`` (S,) multiplies each
    species' positive weight (see :func:`species_weights`). A batch with no masked cell gives 0.
    """
    n = mask.sum().clamp_min(1.0)
    pos = cfg.pos_weight if species_weight is None else cfg.pos_weight * species_weight.reshape(1, -1, 1, 1)
    bce_cells = -(pos * target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits))
    bce = (bce_cells * mask).sum() / n
    prob = torch.sigmoid(logits) * mask
    positives = target * mask
    inter = (prob * positives).sum()
    dice = 1.0 - (2 * inter + 1.0) / (prob.sum() + positives.sum() + 1.0)
    recall = 1.0 - (inter + 1.0) / (positives.sum() + 1.0)
    total = cfg.bce * bce + cfg.dice * dice + cfg.recall * recall
    return total, {"bce": float(bce.detach()), "dice": float(dice.detach()), "recall": float(recall.detach())}


def species_weights(labels: np.ndarray, cells: np.ndarray, balance: float) -> np.ndarray:
    """(S,) float32 weights (mean frequency / frequency) ** balance over the given cells, clipped to 1/8..8."""
    freq = labels[:, cells].mean(axis=1).astype(np.float64)
    present = freq > 0
    ratio = np.ones_like(freq)
    if present.any():
        ratio[present] = freq[present].mean() / freq[present]
    return np.clip(ratio ** balance, 0.125, 8.0).astype(np.float32)
