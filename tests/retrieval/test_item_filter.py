"""The item-item graph filter (`--item-filter`): its scores against the formula written out, the
per-user standardised blend, and the weight chosen on validation."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from negspace.data.interactions import Interactions
from negspace.evaluation.evaluator import evaluate
from negspace.evaluation.filter_choice import choose_weight
from negspace.retrieval import item_filter as item_filter_module
from negspace.retrieval.item_filter import ItemFilter, blend, blended_scorer, standardised

from tests.conftest import random_interactions


def formula(train: Interactions, histories: np.ndarray) -> np.ndarray:
    """r D_u^-1/2 ... written out densely: R~ = D_u^-1/2 R D_i^-1/2, scores r R~^T R~."""
    r = train.matrix.toarray().astype(np.float64)
    du, di = r.sum(1), r.sum(0)
    with np.errstate(divide="ignore"):
        su = np.where(du > 0, du ** -0.5, 0.0)
        si = np.where(di > 0, di ** -0.5, 0.0)
    norm = su[:, None] * r * si[None, :]
    return (histories > 0).astype(np.float64) @ norm.T @ norm


@pytest.mark.parametrize("dense", [True, False])
def test_filter_scores_follow_the_formula_on_both_paths(dense, monkeypatch):
    monkeypatch.setattr(item_filter_module, "DENSE_MAX_ITEMS", 10_000 if dense else 0)
    train = random_interactions(n_users=50, n_items=30, seed=3)
    f = ItemFilter(train)
    assert (f.dense is not None) == dense
    rows = train.matrix[[0, 5, 17]]
    rows.data[:] = 3.0  # a weighted history scores as its binary pattern
    got = f.scores(rows).numpy()
    assert got.dtype == np.float32 and got.shape == (3, 30)
    np.testing.assert_allclose(got, formula(train, rows.toarray()), rtol=1e-5, atol=1e-6)


def test_an_empty_history_scores_zero_and_standardises_without_nan():
    train = random_interactions(n_users=20, n_items=15, seed=1)
    empty = sp.csr_matrix((1, 15), dtype=np.float32)
    scores = ItemFilter(train).scores(empty)
    assert torch.count_nonzero(scores) == 0
    assert torch.isfinite(standardised(scores)).all()


def test_blend_standardises_each_side_and_weighs_them():
    gen = torch.Generator().manual_seed(0)
    model = torch.randn(4, 12, generator=gen) * 5 + 3
    other = torch.rand(4, 12, generator=gen) * 0.01
    mixed = blend(model, other, 0.25)
    expected = 0.75 * (model - model.mean(1, keepdim=True)) / model.std(1, keepdim=True) \
        + 0.25 * (other - other.mean(1, keepdim=True)) / other.std(1, keepdim=True)
    torch.testing.assert_close(mixed, expected, rtol=1e-5, atol=1e-5)
    # a positive affine change of either side's scores per user leaves the blend as it was
    torch.testing.assert_close(blend(model * 7 - 2, other * 1e3 + 5, 0.25), mixed,
                               rtol=1e-4, atol=1e-4)
    # weight 0 ranks by the model alone
    assert (blend(model, other, 0.0).argsort(1) == model.argsort(1)).all()


def test_weight_zero_is_the_model_scorer_itself():
    train = random_interactions(n_users=20, n_items=15, seed=1)
    fn = lambda users: torch.zeros(len(users), 15)  # noqa: E731
    assert blended_scorer(fn, ItemFilter(train), train.matrix, 0.0) is fn


def _split(inter: Interactions, seed: int = 0) -> tuple[Interactions, Interactions]:
    """Every user's items halved at random: (train, held-out)."""
    rng = np.random.default_rng(seed)
    coo = inter.matrix.tocoo()
    held = rng.random(len(coo.row)) < 0.3
    make = lambda m: Interactions(  # noqa: E731
        sp.csr_matrix((np.ones(m.sum(), np.float32), (coo.row[m], coo.col[m])),
                      shape=inter.matrix.shape), inter.user_ids, inter.item_ids)
    return make(~held), make(held)


def test_the_choice_follows_which_scores_rank_the_held_out_items():
    full = random_interactions(n_users=120, n_items=60, density=0.15, seed=5)
    train, held = _split(full)
    f = ItemFilter(train)
    oracle = torch.from_numpy(held.matrix.toarray())  # ranks every held-out item first
    noise = torch.rand(train.n_users, train.n_items, generator=torch.Generator().manual_seed(1))
    weight, values = choose_weight(lambda u: oracle[u] + 0.0, f, train, held, "recall@20")
    assert weight == 0.0 and values[0.0] == max(values.values())
    weight, values = choose_weight(lambda u: noise[u] + 0.0, f, train, held, "recall@20")
    assert weight > 0 and values[weight] > values[0.0]
    # the grid's values are the evaluator's for the same blends
    for w in (0.0, 0.1, 0.3):
        scorer = blended_scorer(lambda u: noise[u] + 0.0, f, train.matrix, w)
        assert values[w] == pytest.approx(evaluate(scorer, train, held, ks=(20,))["recall@20"])
