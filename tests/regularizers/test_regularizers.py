import math

import torch

from negspace.regularizers import covariance, embedding_l2, gor


def test_gor_hand_computed():
    d = 2
    pos = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    neg = torch.tensor([[[1.0, 0.0], [0.0, 1.0]],      # dots 1, 0
                        [[0.6, 0.8], [0.0, -1.0]]])    # dots 0.8, -1
    # m1 = (1 + 0 + 0.8 - 1) / 4 = 0.2; m2 = (1 + 0 + 0.64 + 1) / 4 = 0.66
    # L = 0.2^2 + max(0, 0.66 - 1/2) = 0.04 + 0.16 = 0.2
    assert math.isclose(gor(pos, neg).item(), 0.2, rel_tol=1e-6)


def test_gor_second_term_clipped_at_zero():
    pos = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    neg = torch.tensor([[[0.0, 1.0, 0.0, 0.0]]])  # orthogonal: m1 = 0, m2 = 0 < 1/4
    assert gor(pos, neg).item() == 0.0


def test_covariance_hand_computed():
    x = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    # centred: [[-1, 1], [1, -1]]; C = X^T X / 2 = [[1, -1], [-1, 1]]
    # (||C||_F^2 - ||diag||^2) / n = (4 - 2) / 2 = 1
    assert math.isclose(covariance(x).item(), 1.0)


def test_embedding_l2_hand_computed():
    u = torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    v = torch.tensor([[3.0, 0.0], [0.0, 0.0]])
    # (2 + 4 + 9) / 2 rows
    assert math.isclose(embedding_l2(u, v).item(), 7.5)
