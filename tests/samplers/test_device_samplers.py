"""The device samplers (samplers/device.py), run on the CPU: the same laws as the host samplers."""

import numpy as np
import pytest
import torch
from scipy import stats

from negspace.models import CML
from negspace.samplers import (PopularitySampler, SharedNegativeSampler, TwoStageSampler,
                               UniformSampler)
from negspace.samplers.device import PositiveIndex, device_sampler
from negspace.samplers.memory_bank import MemoryBankSampler
from negspace.samplers.popularity import popularity_weights
from negspace.samplers.two_stage import spread_out_log_weights

from ..conftest import random_interactions

CPU = torch.device("cpu")


def _t(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, np.int64))


def test_positive_index_contains_equals_the_csr(interactions):
    index = PositiveIndex(interactions, CPU)
    users = np.repeat(np.arange(interactions.n_users), interactions.n_items)
    items = np.tile(np.arange(interactions.n_items), interactions.n_users)
    got = index.contains(_t(users), _t(items)).numpy()
    np.testing.assert_array_equal(got, interactions.contains(users, items))


@pytest.mark.parametrize("host", [UniformSampler(seed=1), PopularitySampler(beta=0.8, seed=1),
                                  TwoStageSampler(n_candidates=15, seed=1),
                                  TwoStageSampler(n_candidates=30, temperature=64.0, cap=0.875, seed=1)],
                         ids=lambda s: s.name)
def test_never_a_training_positive(interactions, host):
    host.fit(interactions)
    ds = device_sampler(host, CPU)
    model = CML(interactions.n_users, interactions.n_items, 8)
    users, items = interactions.pairs()
    for _ in range(5):
        out = ds.sample(_t(users), _t(items), 5, model).numpy()
        assert out.shape == (len(users), 5)
        assert ((out >= 0) & (out < interactions.n_items)).all()
        assert not interactions.contains(np.repeat(users, 5), out.ravel()).any()


def test_uniform_is_uniform_over_the_complement(interactions):
    ds = device_sampler(UniformSampler(seed=2).fit(interactions), CPU)
    user = 3
    draws = ds.sample(_t(np.full(20000, user)), _t(np.zeros(20000)), 1).numpy().ravel()
    free = ~interactions.contains(np.full(interactions.n_items, user), np.arange(interactions.n_items))
    obs = np.bincount(draws, minlength=interactions.n_items)
    assert obs[~free].sum() == 0
    assert stats.chisquare(obs[free]).pvalue > 1e-3


@pytest.mark.parametrize("user", [0, 5])  # user 0 holds most of the catalogue (and its mass)
def test_popularity_is_the_exact_conditional_law(interactions, user):
    host = PopularitySampler(beta=1.0, seed=3).fit(interactions)
    ds = device_sampler(host, CPU)
    draws = ds.sample(_t(np.full(30000, user)), _t(np.zeros(30000)), 1).numpy().ravel()
    w = popularity_weights(interactions, 1.0)
    w[interactions.contains(np.full(interactions.n_items, user), np.arange(interactions.n_items))] = 0
    obs = np.bincount(draws, minlength=interactions.n_items)
    support = w > 0
    assert obs[~support].sum() == 0
    assert stats.chisquare(obs[support], w[support] / w.sum() * len(draws)).pvalue > 1e-3


def test_shared_mask_marks_the_rows_positives(interactions):
    for law in ("uniform", "popularity"):
        ds = device_sampler(SharedNegativeSampler(law, seed=4).fit(interactions), CPU)
        users, _ = interactions.pairs()
        neg, keep = ds.sample_shared(_t(users), _t(users), 50)
        expect = ~interactions.contains(users[:, None], neg.numpy()[None, :])
        np.testing.assert_array_equal(keep.numpy(), expect)


@pytest.mark.parametrize("temperature,cap", [(1.0, None), (64.0, 0.875)])
def test_two_stage_first_negative_follows_the_weights(temperature, cap):
    inter = random_interactions(n_users=30, n_items=25, seed=7)
    dim = 6
    torch.manual_seed(7)
    model = CML(inter.n_users, inter.n_items, dim)
    host = TwoStageSampler(n_candidates=10_000, temperature=temperature, cap=cap, seed=6).fit(inter)
    ds = device_sampler(host, CPU)
    user, item = 2, int(inter.indices[inter.indptr[2]])
    v = torch.nn.functional.normalize(model.items.weight.detach(), dim=-1)
    w = spread_out_log_weights(v[item] @ v.T, dim, cap, temperature).exp().double().numpy()
    w[inter.matrix.toarray()[user] > 0] = 0.0
    w[inter.item_counts() == 0] = 0.0
    draws = ds.sample(_t(np.full(8000, user)), _t(np.full(8000, item)), 1, model).numpy().ravel()
    obs = np.bincount(draws, minlength=inter.n_items)
    expected = w / w.sum() * len(draws)
    support = expected > 0
    assert obs[~support].sum() == 0
    assert stats.chisquare(obs[support], expected[support]).pvalue > 1e-3


def test_memory_bank_candidates_match_the_host_bank(interactions):
    host = MemoryBankSampler(size=8, seed=1).fit(interactions)
    ds = device_sampler(host, CPU)
    users, items = interactions.pairs()
    u, i = users[:6], items[:6]
    for step in range(3):
        vecs = torch.randn(6, 4)
        for sampler, args in ((host, (u, i)), (ds, (_t(u), _t(i)))):
            cands = sampler.candidates(*args, 5)
            sampler.enqueue(_t(i), vecs)
        ref = host.candidates(u, i, 5)
        got = ds.candidates(_t(u), _t(i), 5)
        if step:
            torch.testing.assert_close(got.bank_vectors, ref.bank_vectors)
            assert torch.equal(got.bank_ids, ref.bank_ids)
            assert torch.equal(got.bank_mask, ref.bank_mask)
            torch.testing.assert_close(got.bank_log_q, ref.bank_log_q)
        assert torch.equal(got.mask, ref.mask)


def test_two_stage_refresh_every_reads_stale_vectors_and_resumes():
    inter = random_interactions(n_users=30, n_items=40, seed=2)
    host = TwoStageSampler(n_candidates=20, temperature=64.0, cap=0.875, refresh_every=3,
                           seed=1).fit(inter)
    ds = device_sampler(host, CPU)
    model = CML(inter.n_users, inter.n_items, 8)
    users, items = inter.pairs()
    u, i = _t(users[:20]), _t(items[:20])
    ds.sample(u, i, 3, model)
    state = ds.state_dict()
    with torch.no_grad():
        model.items.weight.mul_(-1.0)  # the cache (refreshed every 3 calls) must not see this yet
    first = ds.sample(u, i, 3, model)
    again = device_sampler(host, CPU)
    again.load_state_dict(state)
    assert torch.equal(first, again.sample(u, i, 3, model))
    assert ds._calls == 2 and ds._cached is not None


def test_draw_items_is_declared_by_every_sampler(interactions):
    """The softmax by users (`--batch-by user`) reads `draw_items` from any sampler: None (the
    exact sum) unless the sampler's draw estimates it, on the host and on the device alike."""
    from negspace.samplers.in_batch import FullCatalogueSampler, UniformSoftmaxSampler
    for host in (UniformSampler(seed=1), FullCatalogueSampler(seed=1)):
        host.fit(interactions)
        assert host.draw_items(7) is None and not host.draws_items  # the declared capability
        assert device_sampler(host, CPU).draw_items(7) is None
    host = UniformSoftmaxSampler(seed=1).fit(interactions)
    assert host.draws_items
    for drawn in (host.draw_items(7), device_sampler(host, CPU).draw_items(7)):
        assert drawn.shape == (7,) and 0 <= int(drawn.min()) and int(drawn.max()) < interactions.n_items
