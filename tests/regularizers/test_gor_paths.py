"""GOR's two ways of computing the (positive, negative) dot products agree with the definition."""

import torch

from negspace.regularizers import gor


def _reference(pos, neg):
    dots = torch.einsum("bd,bnd->bn", pos, neg.contiguous())
    return dots.mean().pow(2) + torch.relu(dots.pow(2).mean() - 1.0 / pos.shape[-1])


def test_gor_per_row_and_shared_negatives_match_the_definition():
    gen = torch.Generator().manual_seed(0)
    pos = torch.randn(7, 4, generator=gen) / 2
    per_row = torch.randn(7, 3, 4, generator=gen) / 2
    shared = torch.randn(5, 4, generator=gen).unsqueeze(0).expand(7, -1, -1)
    for neg in (per_row, shared):
        p, n = pos.clone().requires_grad_(), neg.detach().clone().requires_grad_()
        gor(p, neg if neg is shared else n).backward()
        q = pos.clone().requires_grad_()
        _reference(q, neg).backward()
        torch.testing.assert_close(gor(pos, neg), _reference(pos, neg))
        torch.testing.assert_close(p.grad, q.grad)
