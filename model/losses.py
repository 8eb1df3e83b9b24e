"""The training loss on hidden cells: weighted BCE + soft Dice + a soft-recall term."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model.config import LossConfig


def masked_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                cfg: LossConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """The total loss and its parts, computed only where ``mask`` is 1 (hidden, covered, train cells).

    BCE weighs positives by ``pos_weight``; soft Dice and soft recall are pooled over the batch
    (per-cell Dice is meaningless for targets this sparse). A batch with no masked cell gives 0.
    """
    n = mask.sum().clamp_min(1.0)
    bce_cells = -(cfg.pos_weight * target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits))
    bce = (bce_cells * mask).sum() / n
    prob = torch.sigmoid(logits) * mask
    positives = target * mask
    inter = (prob * positives).sum()
    dice = 1.0 - (2 * inter + 1.0) / (prob.sum() + positives.sum() + 1.0)
    recall = 1.0 - (inter + 1.0) / (positives.sum() + 1.0)
    total = cfg.bce * bce + cfg.dice * dice + cfg.recall * recall
    return total, {"bce": float(bce.detach()), "dice": float(dice.detach()), "recall": float(recall.detach())}
