"""The compiled 2-stage paths (samplers/two_stage_fast.py) against the torch path and the exact law."""

import numpy as np
import pytest
import torch
from scipy import stats

from negspace.models import CML
from negspace.samplers import TwoStageSampler
from negspace.samplers import two_stage_fast as fast
from negspace.samplers.two_stage import spread_out_log_weights

from ..conftest import random_interactions

pytestmark = pytest.mark.skipif(not fast.AVAILABLE, reason="numba is not installed")


@pytest.mark.parametrize("n_items,c", [(400, 50), (400, 300), (60, 45)])
def test_stage1_compiled_draws_the_torch_paths_candidates(n_items, c):
    # (60, 45): popularity concentrated enough that the rounds end on the Gumbel finish
    inter = random_interactions(n_users=50, n_items=n_items, density=0.1, seed=3)
    torch_path = TwoStageSampler(n_candidates=c, seed=4, compiled=False).fit(inter)
    compiled = TwoStageSampler(n_candidates=c, seed=4, compiled=True).fit(inter)
    for _ in range(20):
        a, b = torch_path.candidates(), compiled.candidates()
        np.testing.assert_array_equal(a, b)
        assert not compiled._is_cand.any()  # the seen-flags are reset between calls
    assert torch_path.rng.random() == compiled.rng.random()


def _exact_pairs(w: np.ndarray) -> np.ndarray:
    """Ordered-pair probabilities of successive sampling of 2 items with weights w."""
    total = w.sum()
    p = (w / total)[:, None] * (w[None, :] / (total - w[:, None]))
    np.fill_diagonal(p, 0.0)
    return p


def _setup(temperature: float, cap: float | None, seed: int = 7):
    inter = random_interactions(n_users=30, n_items=25, seed=seed)
    dim = 6
    torch.manual_seed(seed)
    model = CML(inter.n_users, inter.n_items, dim)
    user = 2
    item = int(inter.indices[inter.indptr[user]])
    v = torch.nn.functional.normalize(model.items.weight.detach(), dim=-1)
    s = v[item] @ v.T
    w = spread_out_log_weights(s, dim, cap, temperature).exp().double().numpy()
    w[inter.matrix.toarray()[user] > 0] = 0.0
    w[inter.item_counts() == 0] = 0.0  # not candidates: popularity zero
    return inter, model, user, item, w


# the proposal budget is the compiled path's: the torch path runs without one only
@pytest.mark.parametrize("compiled,budget", [(True, None), (True, 1), (True, 3), (False, None)])
def test_stage2_pairs_follow_successive_sampling(compiled, budget, monkeypatch):
    """Both paths draw ordered pairs with the exact probabilities; with a budget of 1 or 3
    proposals most rows finish on the exact path from what rejection drew (still exact)."""
    if budget is not None:
        monkeypatch.setattr(fast, "proposals_per_row", lambda n, log_env: budget)
    inter, model, user, item, w = _setup(temperature=64.0, cap=0.875)
    assert (w > 0).sum() >= 6
    sampler = TwoStageSampler(n_candidates=10_000, temperature=64.0, cap=0.875, seed=11,
                              compiled=compiled).fit(inter)
    draws = np.concatenate([sampler.sample(np.full(2000, user), np.full(2000, item), 2, model)
                            for _ in range(6)])
    assert (draws[:, 0] != draws[:, 1]).all()
    n_items = inter.n_items
    obs = np.bincount(draws[:, 0] * n_items + draws[:, 1], minlength=n_items ** 2)
    expected = _exact_pairs(w).ravel() * len(draws)
    support = expected > 0
    assert obs[~support].sum() == 0
    assert stats.chisquare(obs[support], expected[support] / expected[support].sum()
                           * obs.sum()).pvalue > 1e-3


def test_compiled_rows_without_enough_admissible_candidates_are_filled():
    inter = random_interactions(n_users=30, n_items=25, seed=5)
    model = CML(inter.n_users, inter.n_items, 6)
    sampler = TwoStageSampler(n_candidates=6, temperature=64.0, cap=0.875, seed=2,
                              compiled=True).fit(inter)
    users, items = inter.pairs()
    idx = np.random.default_rng(0).integers(0, inter.nnz, 200)
    users, items = users[idx], items[idx]
    for _ in range(10):
        out = sampler.sample(users, items, 5, model)
        assert out.shape == (200, 5)
        assert not inter.contains(np.repeat(users, 5), out.ravel()).any()


def test_compiled_path_is_seeded_and_resumes_from_its_state():
    inter = random_interactions(n_users=40, n_items=60, seed=1)
    model = CML(inter.n_users, inter.n_items, 8)
    users, items = inter.pairs()
    a = TwoStageSampler(n_candidates=30, temperature=64.0, cap=0.875, seed=3, compiled=True).fit(inter)
    b = TwoStageSampler(n_candidates=30, temperature=64.0, cap=0.875, seed=3, compiled=True).fit(inter)
    a.sample(users[:50], items[:50], 5, model)
    state = a.state_dict()
    first = a.sample(users[:50], items[:50], 5, model)
    b.load_state_dict(state)
    np.testing.assert_array_equal(first, b.sample(users[:50], items[:50], 5, model))


def test_peaked_weights_take_the_torch_path():
    # temperature 1 without a cap: log w(hi) - log w(0) is hundreds of nats
    assert fast.log_envelope((64 - 3) / 2.0, 1 - 1e-6) > fast.MAX_LOG_ENVELOPE
    assert fast.log_envelope((64 - 3) / 2.0 / 64.0, 0.875) < 1.0
