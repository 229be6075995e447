import math

import pytest
import torch

from negspace.losses.sampled_softmax import sampled_softmax


def _by_hand(pos, neg, t, lq_pos, lq_neg, a, keep):
    """-log softmax written out term by term in floats."""
    logits = [pos / t - a * lq_pos] + [n / t - a * q for n, q, k in zip(neg, lq_neg, keep) if k]
    return -(logits[0] - math.log(sum(math.exp(x) for x in logits)))


@pytest.mark.parametrize("t, a", [(1.0, 0.0), (0.2, 1.0), (0.5, 0.4)])
def test_logq_term_against_a_hand_computed_softmax(t, a):
    pos = torch.tensor([0.3, -0.1])
    neg = torch.tensor([[0.5, 0.2, -0.4], [0.1, 0.9, 0.0]])
    lq_neg = torch.tensor([-1.0, -3.0, -0.5])
    lq_pos = torch.tensor([-2.0, -0.7])
    keep = torch.tensor([[True, False, True], [True, True, True]])
    got = sampled_softmax(pos, neg, t, lq_pos, lq_neg, a, keep)
    for b in range(2):
        want = _by_hand(pos[b].item(), neg[b].tolist(), t, lq_pos[b].item(), lq_neg.tolist(), a,
                        keep[b].tolist())
        assert got[b].item() == pytest.approx(want, rel=1e-5)


def test_the_correction_favours_rarely_sampled_negatives():
    """With A = 1 a popular negative (high q) is pushed down less than a rare one."""
    pos, neg = torch.zeros(1), torch.zeros(1, 2, requires_grad=True)
    loss = sampled_softmax(pos, neg, 1.0, torch.zeros(1), torch.tensor([-0.1, -5.0]), 1.0)
    loss.sum().backward()
    assert neg.grad[0, 1] > neg.grad[0, 0] > 0


def test_masked_negatives_change_nothing_and_get_no_gradient():
    pos = torch.tensor([0.2])
    neg = torch.tensor([[0.4, 3.0]], requires_grad=True)
    masked = sampled_softmax(pos, neg, 0.5, mask=torch.tensor([[True, False]]))
    alone = sampled_softmax(pos, neg[:, :1].detach(), 0.5)
    assert masked.item() == pytest.approx(alone.item())
    masked.sum().backward()
    assert neg.grad[0, 1] == 0
