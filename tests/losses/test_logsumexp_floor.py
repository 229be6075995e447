"""The floored log-sum-exp of the sampled softmax against torch.logsumexp."""

import torch

from negspace.losses.sampled_softmax import _logsumexp_rows


def test_floored_logsumexp_equals_torch_logsumexp_with_its_gradient():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 500, generator=gen) * 30  # many logits far below their row maximum
    logits[:, 7::50] = float("-inf")  # masked candidates
    a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    mine, ref = _logsumexp_rows(a), torch.logsumexp(b, dim=1)
    torch.testing.assert_close(mine, ref, rtol=1e-6, atol=1e-5)
    g = torch.randn(64, generator=gen)
    (mine * g).sum().backward()
    (ref * g).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)
    assert torch.equal(a.grad[:, 7::50], torch.zeros_like(a.grad[:, 7::50]))
