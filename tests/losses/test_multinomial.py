"""The multinomial likelihood's hand-written backward against autograd's, and the heap setting
that keeps its large score matrices mapped."""

import math
import platform
import sys

import pytest
import torch

from negspace.losses.multinomial import multinomial_nll
from negspace.training.heap import keep_large_blocks


def _autograd(logits, rows, cols, log_weight=None):
    counts = logits.new_zeros(len(logits)).index_add_(0, rows, logits.new_ones(len(rows)))
    lse = torch.logsumexp(logits if log_weight is None else logits + log_weight, dim=1)
    return ((counts * lse).sum() - logits[rows, cols].sum()) / len(rows)


@pytest.mark.parametrize("weighted", [False, True])
def test_value_and_gradient_match_autograd(weighted):
    gen = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(6, 40, generator=gen, dtype=torch.float64)).requires_grad_()
    rows = torch.tensor([0, 0, 1, 3, 3, 3, 5])
    cols = torch.tensor([1, 7, 2, 0, 9, 39, 3])
    log_weight = None
    if weighted:  # a sampled estimate: the positives exactly, draws scaled, duplicates dropped
        drop = torch.rand(30, generator=gen) < 0.3
        log_weight = torch.cat([torch.zeros(10, dtype=torch.float64),
                                torch.where(drop, float("-inf"), math.log(4.0)).double()])
    want = _autograd(logits, rows, cols, log_weight)
    got = multinomial_nll(logits, rows, cols, log_weight)
    want_grad, = torch.autograd.grad(2.5 * want, logits)
    got_grad, = torch.autograd.grad(2.5 * got, logits)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    assert torch.allclose(got_grad, want_grad, atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: multinomial_nll(t, rows, cols, log_weight),
                                    (logits.detach().clone().requires_grad_(),))


def test_the_callers_scores_are_left_as_they_were():
    logits = torch.randn(3, 5, requires_grad=True)
    before = logits.detach().clone()
    multinomial_nll(logits, torch.tensor([0, 2]), torch.tensor([1, 4])).backward()
    assert torch.equal(logits.detach(), before)


def test_keep_large_blocks_is_idempotent():
    first = keep_large_blocks()
    assert keep_large_blocks() is first
    if sys.platform.startswith("linux") and "glibc" in " ".join(platform.libc_ver()):
        assert first


def test_keep_glibc_defaults_decides_before_the_trainer_does(monkeypatch):
    from negspace.training import heap
    monkeypatch.setattr(heap, "_applied", None)  # a process that has not decided yet
    heap.keep_glibc_defaults()
    assert heap.keep_large_blocks() is False  # the trainer's call now changes nothing
    monkeypatch.setattr(heap, "_applied", True)  # already raised: it stays so
    heap.keep_glibc_defaults()
    assert heap.keep_large_blocks() is True
