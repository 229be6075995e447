import pytest
import torch

from negspace.losses import cosine_contrastive, multi_margin


def test_ccl_hand_computed():
    pos = torch.tensor([0.8, 1.0])
    neg = torch.tensor([[0.95, 0.5, 0.92], [0.1, 0.99, -0.3]])
    # row 0: (1 - 0.8) + 2 * mean(0.05, 0, 0.02) = 0.2 + 2 * 0.07 / 3
    # row 1: 0 + 2 * mean(0, 0.09, 0) = 2 * 0.03
    out = cosine_contrastive(pos, neg, margin=0.9, negative_weight=2.0)
    assert torch.allclose(out, torch.tensor([0.2 + 0.14 / 3, 0.06]), atol=1e-6)


def test_mml_hand_computed():
    pos = torch.tensor([0.5])
    neg = torch.tensor([[0.85, 0.65, 0.95, 0.2]])
    margins, weights = (0.6, 0.7, 0.8, 0.9), (0.05, 0.15, 0.2, 0.6)
    # per negative: 0.85 -> 0.05*0.25 + 0.15*0.15 + 0.2*0.05 = 0.045
    #               0.65 -> 0.05*0.05 = 0.0025
    #               0.95 -> 0.05*0.35 + 0.15*0.25 + 0.2*0.15 + 0.6*0.05 = 0.115
    #               0.2  -> 0
    # row: 2 * (1 - 0.5) + 3 * (0.045 + 0.0025 + 0.115) / 4
    out = multi_margin(pos, neg, margins, weights, positive_weight=2.0, negative_weight=3.0)
    assert out.shape == (1,)
    assert out.item() == pytest.approx(1.0 + 3 * 0.1625 / 4, abs=1e-6)


def test_mml_slope_grows_at_each_margin():
    # d loss / d y of one negative: the sum of the weights of the margins below y
    margins, weights = (0.6, 0.7, 0.8, 0.9), (0.05, 0.15, 0.2, 0.6)
    for y, slope in [(0.55, 0.0), (0.65, 0.05), (0.75, 0.2), (0.85, 0.4), (0.95, 1.0)]:
        neg = torch.tensor([[y]], requires_grad=True)
        multi_margin(torch.tensor([1.0]), neg, margins, weights).sum().backward()
        assert neg.grad.item() == pytest.approx(slope, abs=1e-6)


@pytest.mark.parametrize("masked", [False, True])
def test_ccl_is_one_margin_mml(masked):
    g = torch.Generator().manual_seed(0)
    pos = torch.rand(64, generator=g, dtype=torch.float64) * 2 - 1
    neg = torch.rand(64, 300, generator=g, dtype=torch.float64) * 2 - 1
    mask = torch.rand(64, 300, generator=g) > 0.3 if masked else None
    for m, w in [(0.9, 150.0), (0.4, 300.0), (-0.2, 1.0)]:
        ccl = cosine_contrastive(pos, neg, m, w, mask)
        mml = multi_margin(pos, neg, [m], [1.0], positive_weight=1.0, negative_weight=w, neg_mask=mask)
        assert torch.allclose(ccl, mml, rtol=1e-12, atol=1e-12)
    # and the identity is not vacuous: more margins give another value
    assert not torch.allclose(cosine_contrastive(pos, neg, 0.9, 1.0),
                              multi_margin(pos, neg, [0.6, 0.9], [0.5, 0.5]))


def test_mask_averages_over_kept_negatives_only():
    pos = torch.tensor([1.0, 1.0])
    neg = torch.tensor([[0.95, 0.99], [0.95, 0.99]])
    mask = torch.tensor([[True, False], [False, False]])
    out = cosine_contrastive(pos, neg, 0.9, 1.0, mask)
    # row 0 keeps only 0.95 -> 0.05; row 1 keeps none -> 0
    assert torch.allclose(out, torch.tensor([0.05, 0.0]))


def test_mml_needs_one_weight_per_margin():
    with pytest.raises(ValueError, match="margin weights"):
        multi_margin(torch.zeros(1), torch.zeros(1, 2), [0.5, 0.6], [1.0])
