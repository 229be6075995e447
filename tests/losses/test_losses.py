import math

import torch

from negspace.losses import bpr, triplet_hinge


def test_triplet_hinge_hand_computed():
    d2_pos = torch.tensor([0.5, 2.0, 0.1])
    d2_neg = torch.tensor([[1.0, 3.0], [0.5, 4.0], [3.0, 2.5]])
    # row 0: 0.5 - 1.0 + 1 = 0.5; row 1: 2.0 - 0.5 + 1 = 2.5; row 2: 0.1 - 2.5 + 1 < 0 -> 0
    out = triplet_hinge(d2_pos, d2_neg, margin=1.0)
    assert torch.allclose(out, torch.tensor([0.5, 2.5, 0.0]))


def test_triplet_rank_weight_hand_computed():
    d2_pos = torch.tensor([0.5, 2.0])
    d2_neg = torch.tensor([[1.0, 3.0], [0.5, 4.0]])
    # impostors (D^2_neg < D^2_pos + 1): row 0 -> {1.0} = 1; row 1 -> {0.5, 4.0 >= 3.0 no} = 1
    # w = log(1 + floor(M * 1 / 2)) with M = 10 -> log(6)
    out = triplet_hinge(d2_pos, d2_neg, margin=1.0, rank_weight=True, n_items=10)
    assert torch.allclose(out, torch.tensor([0.5 * math.log(6), 2.5 * math.log(6)]))


def test_triplet_rank_weight_zero_without_impostors():
    out = triplet_hinge(torch.tensor([0.0]), torch.tensor([[5.0, 6.0]]), 1.0, True, 100)
    assert out.item() == 0.0


def test_bpr_hand_computed():
    pos = torch.tensor([2.0])
    neg = torch.tensor([[1.0, 3.0]])
    # mean(-log sigmoid(1), -log sigmoid(-1)) = mean(0.31326, 1.31326) = 0.81326
    expected = (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(1.0))) / 2
    assert math.isclose(bpr(pos, neg).item(), expected, rel_tol=1e-6)
