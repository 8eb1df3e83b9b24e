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
