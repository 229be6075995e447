"""The row-wise lazy Adam against torch.optim.SparseAdam, and the dense part against Adam."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from negspace.data.interactions import Interactions
from negspace.models.cml import CML
from negspace.models.two_tower import TwoTower
from negspace.training.optim import RowAdam, SparseFriendlyAdam


def _batches(n_rows: int, steps: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    # repeated rows within a batch (duplicates must be summed) and rows absent from some steps
    return [(torch.randint(n_rows // 2, (40,), generator=gen),
             torch.randint(n_rows - 10, (120,), generator=gen)) for _ in range(steps)]


def _loss(emb: nn.Embedding, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return emb(a).pow(2).sum() + (emb(b) * torch.linspace(-1, 1, emb.embedding_dim)).sum()


@pytest.mark.parametrize("lr", [1e-3, 0.05])
def test_row_adam_equals_sparse_adam_over_steps(lr):
    torch.manual_seed(0)
    ref = nn.Embedding(300, 16, sparse=True)
    mine = copy.deepcopy(ref)
    start = ref.weight.detach().clone()
    opt_ref = torch.optim.SparseAdam(ref.parameters(), lr=lr)
    opt = RowAdam(mine.parameters(), lr=lr)
    untouched = torch.ones(300, dtype=torch.bool)
    for a, b in _batches(300, 12):
        untouched[a] = untouched[b] = False
        for emb, o in ((ref, opt_ref), (mine, opt)):
            o.zero_grad()
            _loss(emb, a, b).backward()
            o.step()
        torch.testing.assert_close(mine.weight, ref.weight, rtol=0, atol=1e-6)
    s_ref, s = opt_ref.state[ref.weight], opt.state[mine.weight]
    assert s["step"] == s_ref["step"] == 12
    torch.testing.assert_close(s["exp_avg"], s_ref["exp_avg"], rtol=0, atol=1e-6)
    torch.testing.assert_close(s["exp_avg_sq"], s_ref["exp_avg_sq"], rtol=1e-5, atol=1e-9)
    assert untouched.any()  # rows never touched kept their initial values and zero moments
    assert torch.equal(s["exp_avg"][untouched], torch.zeros_like(s["exp_avg"][untouched]))
    assert torch.equal(mine.weight[untouched], start[untouched])


def test_row_adam_is_deterministic_and_its_state_loads_into_sparse_adam():
    def run(steps):
        torch.manual_seed(1)
        emb = nn.Embedding(200, 8, sparse=True)
        opt = RowAdam(emb.parameters(), lr=0.01)
        for a, b in steps:
            opt.zero_grad()
            _loss(emb, a, b).backward()
            opt.step()
        return emb, opt
    batches = _batches(200, 6, seed=3)
    (e1, o1), (e2, _) = run(batches), run(batches)
    assert torch.equal(e1.weight, e2.weight)
    # SparseAdam's layout: a checkpoint of one continues in the other
    ref = copy.deepcopy(e1)
    opt_ref = torch.optim.SparseAdam(ref.parameters(), lr=0.01)
    opt_ref.load_state_dict(copy.deepcopy(o1.state_dict()))
    more = _batches(200, 3, seed=4)
    for a, b in more:
        for emb, o in ((ref, opt_ref), (e1, o1)):
            o.zero_grad()
            _loss(emb, a, b).backward()
            o.step()
    torch.testing.assert_close(e1.weight, ref.weight, rtol=0, atol=1e-6)


def test_row_adam_takes_a_coalesced_gradient():
    emb = nn.Embedding(50, 4, sparse=True)
    ref = copy.deepcopy(emb)
    opt, opt_ref = RowAdam(emb.parameters(), lr=0.1), torch.optim.SparseAdam(ref.parameters(), lr=0.1)
    idx = torch.tensor([3, 7, 3, 9])
    for e, o in ((emb, opt), (ref, opt_ref)):
        e(idx).sum().backward()
        e.weight.grad = e.weight.grad.coalesce()
        o.step()
    torch.testing.assert_close(emb.weight, ref.weight, rtol=0, atol=1e-7)


def test_sparse_friendly_adam_matches_sparse_adam_and_adam_on_a_model():
    """CML (sparse tables only) and a two-tower (sparse user table, dense items and MLPs)."""
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 20, 200), rng.integers(0, 30, 200)
    hist = Interactions.from_indices(users, items, np.arange(20).astype(str),
                                     np.arange(30).astype(str))
    torch.manual_seed(0)
    models = [CML(20, 30, 8), TwoTower(20, 30, 8, hist)]
    for model in models:
        ref = copy.deepcopy(model)
        opt = SparseFriendlyAdam(model, lr=0.01)
        sparse = ref.sparse_parameters()
        ids = {id(p) for p in sparse}
        dense = [p for p in ref.parameters() if id(p) not in ids]
        refs = [torch.optim.SparseAdam(sparse, lr=0.01)] + ([torch.optim.Adam(dense, lr=0.01)]
                                                           if dense else [])
        gen = torch.Generator().manual_seed(2)
        for _ in range(5):
            u, i = torch.randint(20, (16,), generator=gen), torch.randint(30, (16,), generator=gen)
            for m, step, zero in ((model, opt.step, opt.zero_grad),
                                  (ref, lambda: [o.step() for o in refs],
                                   lambda: [o.zero_grad() for o in refs])):
                zero()
                (m.user_vectors(u) * m.item_vectors(i)).sum().backward()
                step()
        for (name, a), b in zip(model.named_parameters(), ref.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
