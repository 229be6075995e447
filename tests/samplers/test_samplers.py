import numpy as np
import pytest
import torch
from scipy import stats

from negspace.models import CML
from negspace.samplers import PopularitySampler, TwoStageSampler, UniformSampler
from negspace.samplers.base import ComplementIndex
from negspace.samplers.two_stage import spread_out_log_weights

from ..conftest import random_interactions


def _batch(inter, size=500, seed=0):
    rng = np.random.default_rng(seed)
    users, items = inter.pairs()
    idx = rng.integers(0, inter.nnz, size)
    return users[idx], items[idx]


def _all_samplers():
    return [UniformSampler(seed=1), PopularitySampler(beta=1.0, seed=1),
            PopularitySampler(beta=0.8, seed=1), TwoStageSampler(n_candidates=15, seed=1),
            TwoStageSampler(n_candidates=15, released=True, seed=1),
            TwoStageSampler(n_candidates=40, cap=0.875, temperature=3.0, seed=1)]


@pytest.mark.parametrize("sampler", _all_samplers(), ids=lambda s: f"{s.name}")
@pytest.mark.parametrize("n", [1, 5])
def test_never_returns_a_training_positive(interactions, sampler, n):
    model = CML(interactions.n_users, interactions.n_items, 8)
    sampler.fit(interactions)
    for seed in range(5):
        users, items = _batch(interactions, seed=seed)
        neg = sampler.sample(users, items, n, model)
        assert neg.shape == (len(users), n)
        assert neg.min() >= 0 and neg.max() < interactions.n_items
        assert not interactions.contains(users[:, None], neg).any()


def test_complement_index_enumerates_non_positives(interactions):
    comp = ComplementIndex(interactions)
    dense = interactions.matrix.toarray() > 0
    for u in range(interactions.n_users):
        r = np.arange(comp.n_free[u])
        got = comp.lookup(np.full(len(r), u), r)
        np.testing.assert_array_equal(got, np.flatnonzero(~dense[u]))


def test_uniform_distribution_chi_square(interactions):
    sampler = UniformSampler(seed=3).fit(interactions)
    user = 5
    free = np.flatnonzero(interactions.matrix.toarray()[user] == 0)
    draws = sampler.sample(np.full(4000, user), np.zeros(4000, np.int64), 5).ravel()
    counts = np.bincount(draws, minlength=interactions.n_items)[free]
    assert counts.sum() == draws.size
    assert stats.chisquare(counts).pvalue > 1e-3


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_popularity_distribution_chi_square(interactions, beta):
    sampler = PopularitySampler(beta=beta, seed=4).fit(interactions)
    counts_f = interactions.item_counts().astype(float)
    for user in (3, 0):  # user 0 holds most of the mass: exercises the exact fallback path
        pos = interactions.matrix.toarray()[user] > 0
        w = np.where(counts_f > 0, counts_f, 0) ** beta * (~pos) * (counts_f > 0)
        expected = w / w.sum()
        draws = sampler.sample(np.full(3000, user), np.zeros(3000, np.int64), 4).ravel()
        obs = np.bincount(draws, minlength=interactions.n_items)
        support = expected > 0
        assert obs[~support].sum() == 0
        assert support.sum() >= 2
        assert stats.chisquare(obs[support], expected[support] * draws.size).pvalue > 1e-3


def test_two_stage_first_stage_is_popularity():
    inter = random_interactions(seed=2)
    sampler = TwoStageSampler(n_candidates=1, beta=1.0, seed=5).fit(inter)
    counts = inter.item_counts().astype(float)
    draws = np.array([sampler.candidates()[0] for _ in range(6000)])
    obs = np.bincount(draws, minlength=inter.n_items)
    expected = counts / counts.sum() * len(draws)
    support = expected > 0
    assert obs[~support].sum() == 0
    assert stats.chisquare(obs[support], expected[support]).pvalue > 1e-3


def test_two_stage_second_stage_follows_inverse_density():
    inter = random_interactions(n_users=30, n_items=25, seed=7)
    dim = 6  # weights moderately peaked, so every candidate has a chance to be seen
    model = CML(inter.n_users, inter.n_items, dim)
    sampler = TwoStageSampler(n_candidates=10_000, seed=6).fit(inter)  # C >= catalogue: all items
    user, item = 2, int(inter.indices[inter.indptr[2]])
    v = torch.nn.functional.normalize(model.items.weight.detach(), dim=-1)
    s = v[item] @ v.T
    w = spread_out_log_weights(s, dim).exp().double().numpy()
    pos = inter.matrix.toarray()[user] > 0
    w[pos] = 0.0
    w[inter.item_counts() == 0] = 0.0  # not candidates: popularity zero
    assert (w > 0).sum() >= 3
    draws = sampler.sample(np.full(8000, user), np.full(8000, item), 1, model).ravel()
    obs = np.bincount(draws, minlength=inter.n_items)
    expected = w / w.sum() * len(draws)
    support = expected > 0
    assert obs[~support].sum() == 0
    assert stats.chisquare(obs[support], expected[support]).pvalue > 1e-3


def test_spread_out_log_weights_values():
    s = torch.tensor([-0.5, 0.0, 0.5, 0.9])
    lw = spread_out_log_weights(s, dim=128)
    assert lw[0] == float("-inf")
    assert lw[1] == 0.0
    # (1 - 0.25)^(-125/2): log = -62.5 * log(0.75)
    assert torch.isclose(lw[2], torch.tensor(-62.5 * np.log(0.75), dtype=torch.float32))
    capped = spread_out_log_weights(s, dim=128, cap=0.5)
    assert capped[3] == capped[2]
    assert torch.isclose(spread_out_log_weights(s, 128, temperature=2.0)[3], lw[3] / 2)


def test_two_stage_exact_weights_never_nan_with_positive_among_candidates():
    inter = random_interactions(n_users=50, n_items=30, seed=8)
    model = CML(inter.n_users, inter.n_items, 128)
    sampler = TwoStageSampler(n_candidates=10_000, seed=1).fit(inter)
    users, items = _batch(inter, 300)
    neg = sampler.sample(users, items, 3, model)
    assert not inter.contains(users[:, None], neg).any()
    assert not (neg == items[:, None]).any()


def _released_weights_sum(s: np.ndarray, dim: int) -> np.ndarray:
    """The released code's per-row weight sum, in float32 (numpy), written as it is there."""
    s = np.minimum(s, 1.0)  # see TwoStageSampler._released_overflow: self-similarity rounding
    with np.errstate(all="ignore"):
        mask = s > 0
        lw = (1.0 - (dim - 1) / 2) * np.log(1.0 - np.square(s) + 1e-8) + np.log(0.2228655673209082)
        w = np.exp(lw.astype(np.float32))
        w[np.isnan(w)] = 0.0
        w[~mask] = 0.0
        total = w.sum(axis=1, keepdims=True)
        w = np.where(total > 0, w / total, w)
        return w.sum(axis=1)


def test_two_stage_released_falls_back_exactly_where_the_released_weights_overflow():
    inter = random_interactions(n_users=50, n_items=30, seed=9)
    model = CML(inter.n_users, inter.n_items, 128)
    sampler = TwoStageSampler(n_candidates=10_000, released=True, seed=1).fit(inter)
    users, items = _batch(inter, 200)
    gen_state = sampler.rng.bit_generator.state
    sampler.sample(users, items, 2, model)
    sampler.rng.bit_generator.state = gen_state
    cand = sampler.candidates()
    v = torch.nn.functional.normalize(model.items.weight.detach(), dim=-1)
    s = (v[torch.from_numpy(items)] @ v[torch.from_numpy(cand)].T).numpy()
    # NaN sum: the released code's overflow fallback; rows whose weights are all zero (every s <= 0)
    # also draw uniformly there, and here, but are not overflow rows.
    total = _released_weights_sum(s, 128)
    expected = np.isnan(total)
    np.testing.assert_array_equal(sampler.last_fallback_mask, expected)
    # the positive is usually a candidate (s = 1), so most rows fall back (94% on Last.fm in docs/results.md)
    assert sampler.last_fallback_rows > 0.3


def test_released_fallback_is_uniform_over_non_positive_candidates():
    inter = random_interactions(n_users=20, n_items=25, seed=10)
    model = CML(inter.n_users, inter.n_items, 128)
    sampler = TwoStageSampler(n_candidates=10_000, released=True, seed=2).fit(inter)
    user, item = 4, int(inter.indices[inter.indptr[4]])
    draws = sampler.sample(np.full(5000, user), np.full(5000, item), 1, model).ravel()
    allowed = (inter.matrix.toarray()[user] == 0) & (inter.item_counts() > 0)
    obs = np.bincount(draws, minlength=inter.n_items)
    assert obs[~allowed].sum() == 0
    assert stats.chisquare(obs[allowed]).pvalue > 1e-3


def test_sampler_is_seeded(interactions):
    model = CML(interactions.n_users, interactions.n_items, 8)
    users, items = _batch(interactions)
    for make in (lambda seed: UniformSampler(seed=seed), lambda seed: PopularitySampler(seed=seed),
                 lambda seed: TwoStageSampler(n_candidates=20, seed=seed),
                 lambda seed: TwoStageSampler(n_candidates=20, released=True, seed=seed)):
        a = make(9).fit(interactions).sample(users, items, 3, model)
        b = make(9).fit(interactions).sample(users, items, 3, model)
        np.testing.assert_array_equal(a, b)  # the same seed repeats the draw
        others = [make(seed).fit(interactions).sample(users, items, 3, model) for seed in (10, 11)]
        assert all((a != c).any() for c in others)  # a sampler ignoring its seed fails here
