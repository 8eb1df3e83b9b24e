import pytest
import torch

from model.config import LossConfig
from model.losses import masked_loss


def test_loss_ignores_unmasked_cells():
    target = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    mask = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    logits = torch.zeros(1, 1, 2, 2, requires_grad=True)
    loss, _ = masked_loss(logits, target, mask, LossConfig())
    loss.backward()
    assert torch.all(logits.grad[..., 1, :] == 0)
    assert torch.all(logits.grad[..., 0, :] != 0)


def test_empty_mask_gives_finite_small_loss():
    loss, parts = masked_loss(torch.zeros(1, 2, 3, 3), torch.ones(1, 2, 3, 3), torch.zeros(1, 2, 3, 3), LossConfig())
    assert torch.isfinite(loss)
    assert parts["bce"] == 0.0


def test_right_predictions_cost_less_than_wrong():
    target = torch.tensor([[[[1.0, 0.0, 0.0, 0.0]]]])
    mask = torch.ones_like(target)
    good, _ = masked_loss(torch.tensor([[[[5.0, -5.0, -5.0, -5.0]]]]), target, mask, LossConfig())
    bad, _ = masked_loss(torch.tensor([[[[-5.0, 5.0, 5.0, 5.0]]]]), target, mask, LossConfig())
    assert good < bad


def test_weights_switch_terms_off():
    target, mask = torch.tensor([[[[1.0, 0.0]]]]), torch.ones(1, 1, 1, 2)
    logits = torch.tensor([[[[0.3, -0.2]]]])
    only_bce, parts = masked_loss(logits, target, mask, LossConfig(bce=1.0, dice=0.0, recall=0.0))
    assert abs(float(only_bce) - parts["bce"]) < 1e-6
    only_recall, parts = masked_loss(logits, target, mask, LossConfig(bce=0.0, dice=0.0, recall=1.0))
    assert abs(float(only_recall) - parts["recall"]) < 1e-6


def test_species_weight_scales_only_that_species_positives():
    import numpy as np

    from model.losses import species_weights

    target = torch.zeros(1, 2, 2, 2)
    target[0, :, 0, 0] = 1
    mask = torch.ones(1, 2, 2, 2)
    logits = torch.zeros(1, 2, 2, 2)
    cfg = LossConfig(bce=1.0, dice=0.0, recall=0.0, pos_weight=1.0)
    plain, _ = masked_loss(logits, target, mask, cfg)
    heavy, _ = masked_loss(logits, target, mask, cfg, torch.tensor([1.0, 3.0]))
    # 8 masked cells of BCE log(2): 2 positives, one of which now counts three times
    assert float(plain) == pytest.approx(np.log(2.0))
    assert float(heavy) == pytest.approx(np.log(2.0) * 10 / 8)
    labels = np.zeros((3, 10, 10), dtype=np.uint8)
    labels[0, :5] = 1        # 50% of cells
    labels[1, 0, :5] = 1     # 5%
    cells = np.ones((10, 10), dtype=bool)
    w = species_weights(labels, cells, 1.0)
    assert w[1] > 1 > w[0] and w[2] == 1.0, "rare species weigh more; an absent species keeps weight 1"
    np.testing.assert_allclose(species_weights(labels, cells, 0.0), 1.0)
