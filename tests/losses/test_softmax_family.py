"""BSL, the full softmax and shared-negative softmax against values computed by hand."""

import math

import numpy as np
import pytest
import torch

from negspace.losses.sampled_softmax import bilateral_softmax, sampled_softmax
from negspace.models import MF
from negspace.samplers.in_batch import FullCatalogueSampler
from negspace.training.objective import Objective
from tests.conftest import random_interactions


def test_bsl_matches_the_formula_by_hand():
    pos = torch.tensor([0.5, -0.2])
    neg = torch.tensor([[0.1, 0.3, -0.4], [0.9, 0.0, 0.2]])
    t1, t2 = 0.2, 0.1
    expected = [-p / t1 + (t2 / t1) * math.log(sum(math.exp(x / t2) for x in row))
                for p, row in zip(pos.tolist(), neg.tolist())]
    got = bilateral_softmax(pos, neg, t1, t2)
    assert got.tolist() == pytest.approx(expected, rel=1e-5)
    # a masked negative is left out of the sum
    mask = torch.tensor([[True, False, True], [True, True, True]])
    first = -0.5 / t1 + (t2 / t1) * math.log(math.exp(0.1 / t2) + math.exp(-0.4 / t2))
    assert bilateral_softmax(pos, neg, t1, t2, mask)[0].item() == pytest.approx(first, rel=1e-5)


def test_bsl_with_equal_temperatures_is_softmax_without_the_positive_in_the_denominator():
    pos, neg = torch.randn(4), torch.randn(4, 6)
    t = 0.3
    expected = -pos / t + torch.logsumexp(neg / t, dim=1)
    assert torch.allclose(bilateral_softmax(pos, neg, t, t), expected, atol=1e-5)


def test_full_softmax_is_cross_entropy_over_the_catalogue_with_other_positives_masked():
    inter = random_interactions(n_users=12, n_items=9, density=0.3, dense_user=False)
    sampler = FullCatalogueSampler(mask_positives=True, seed=0)
    sampler.fit(inter)
    model = MF(inter.n_users, inter.n_items, 4, measure="cosine", init_std=0.5)
    users, items = (torch.from_numpy(a[:7]).long() for a in inter.pairs())
    cands = sampler.candidates(users.numpy(), items.numpy(), 0)
    t = 0.2
    loss = Objective(loss="softmax", temperature=t).with_candidates(model, users, items, cands)
    with torch.no_grad():
        u = torch.nn.functional.normalize(model.users.weight, dim=1)
        v = torch.nn.functional.normalize(model.items.weight, dim=1)
    terms = []
    for user, item in zip(users.tolist(), items.tolist()):
        logits = (u[user] @ v.T / t).tolist()
        positives = set(inter.indices[inter.indptr[user]:inter.indptr[user + 1]].tolist())
        kept = [logits[j] for j in range(inter.n_items) if j == item or j not in positives]
        terms.append(math.log(sum(math.exp(x) for x in kept)) - logits[item])
    assert loss.item() == pytest.approx(float(np.mean(terms)), rel=1e-5)


@pytest.mark.parametrize("compiled", [True, False])
def test_shared_softmax_masks_each_rows_positives(compiled, monkeypatch):
    """The shared sampler builds the mask (compiled kernel or numpy): False exactly where a shared
    negative is a training positive of the row's user; the loss leaves those out."""
    from negspace.samplers import SharedNegativeSampler
    from negspace.training import shared_kernels
    if compiled and not shared_kernels.AVAILABLE:
        pytest.skip("numba is not installed")
    monkeypatch.setattr(shared_kernels, "AVAILABLE", compiled)
    inter = random_interactions(n_users=10, n_items=8, density=0.3, dense_user=False)
    model = MF(inter.n_users, inter.n_items, 4, measure="cosine", init_std=0.5)
    rows = np.random.default_rng(1).choice(inter.nnz, 6, replace=False)  # several users
    users, items = (torch.from_numpy(a[rows]).long() for a in inter.pairs())
    sampler = SharedNegativeSampler("uniform", seed=1).fit(inter)
    negatives, keep = sampler.sample_shared(users.numpy(), items.numpy(), 5)
    dense = inter.matrix.toarray() > 0
    np.testing.assert_array_equal(keep, ~dense[users.numpy()[:, None], negatives[None, :]])
    assert (~keep).any() and keep.any()
    negatives, keep = torch.from_numpy(negatives), torch.from_numpy(keep)
    t = 0.5
    loss = Objective(loss="softmax", temperature=t)(model, users, items, negatives, keep)
    with torch.no_grad():
        u = model.user_vectors(users)
        pos = (u * model.item_vectors(items)).sum(1)
        neg = u @ model.item_vectors(negatives).T
    expected = [-p / t + math.log(math.exp(p / t) + sum(math.exp(x / t) for x, k in zip(r, m) if k))
                for p, r, m in zip(pos.tolist(), neg.tolist(), keep.tolist())]
    assert loss.item() == pytest.approx(float(np.mean(expected)), rel=1e-5)


def test_item_bias_is_carried_by_the_vectors():
    model = MF(3, 5, 4, measure="cosine", init_std=0.5, item_bias=True)
    with torch.no_grad():
        model.bias.weight.copy_(torch.arange(5.0).unsqueeze(1))
    u, v = model.user_vectors(None), model.item_vectors(None)
    cos = torch.nn.functional.normalize(model.users.weight, dim=1) @ \
        torch.nn.functional.normalize(model.items.weight, dim=1).T
    assert model.measure == "dot"
    assert torch.allclose(u @ v.T, cos + torch.arange(5.0), atol=1e-6)


def test_multinomial_equals_the_full_softmax_of_each_pair_with_other_positives_kept():
    from negspace.samplers.in_batch import positive_rows
    inter = random_interactions(n_users=8, n_items=10, density=0.3, dense_user=False)
    model = MF(inter.n_users, inter.n_items, 4, measure="cosine", init_std=0.5)
    users = torch.tensor([1, 3, 4])
    t = 0.25
    loss = Objective(loss="softmax", temperature=t).multinomial(model, users,
                                                                 positive_rows(inter, users))
    with torch.no_grad():
        u = torch.nn.functional.normalize(model.users.weight, dim=1)
        v = torch.nn.functional.normalize(model.items.weight, dim=1)
    terms = []
    for user in users.tolist():
        logits = (u[user] @ v.T / t).tolist()
        lse = math.log(sum(math.exp(x) for x in logits))
        for item in inter.indices[inter.indptr[user]:inter.indptr[user + 1]].tolist():
            terms.append(lse - logits[item])
    assert loss.item() == pytest.approx(float(np.mean(terms)), rel=1e-5)


def test_sampled_multinomial_is_exact_on_the_whole_catalogue_and_unbiased_on_draws():
    """--batch-by user --sampler uniform-softmax: the batch's positives exactly, the other items
    estimated from uniform draws (n_items / N times their sum)."""
    from negspace.samplers.in_batch import positive_rows
    inter = random_interactions(n_users=12, n_items=30, density=0.15, seed=2, dense_user=False)
    model = MF(inter.n_users, inter.n_items, 4, measure="cosine", init_std=0.5)
    users = torch.tensor([0, 2, 5])
    objective = Objective(loss="softmax", temperature=0.5)
    positives = positive_rows(inter, users)
    full = objective.multinomial(model, users, positives)
    # every item drawn once: the estimate is the sum itself
    every = objective.multinomial(model, users, positives, torch.arange(inter.n_items))
    assert every.item() == pytest.approx(full.item(), rel=1e-5)
    # draws with replacement: the softmax sum (exp of the mean log-sum-exp's parts) is unbiased
    with torch.no_grad():
        u = torch.nn.functional.normalize(model.users.weight[users], dim=1)
        v = torch.nn.functional.normalize(model.items.weight, dim=1)
        e = torch.exp(u @ v.T / 0.5)                                  # [3, n_items]
        batch_items = torch.unique(positives[1])
        outside = ~torch.isin(torch.arange(inter.n_items), batch_items)
        g = torch.Generator().manual_seed(0)
        estimates = []
        for _ in range(4000):
            draw = torch.randint(0, inter.n_items, (6,), generator=g)
            keep = outside[draw]
            estimates.append(e[:, batch_items].sum(1)
                             + inter.n_items / 6 * (e[:, draw] * keep).sum(1))
        assert torch.allclose(torch.stack(estimates).mean(0), e.sum(1), rtol=0.03)
    # and through the objective: a draw of 6 gives a loss near the full one, not equal to it
    drawn = objective.multinomial(model, users, positives, torch.randint(0, inter.n_items, (6,), generator=g))
    assert drawn.item() != pytest.approx(full.item(), rel=1e-6) and abs(drawn.item() - full.item()) < 1.0


def test_user_batches_take_the_full_or_the_uniform_sampled_catalogue():
    from negspace.config import make_config
    from negspace.errors import NegspaceError
    base = {"model": "mf", "loss": "softmax", "batch_by": "user"}
    assert make_config({**base, "sampler": "uniform-softmax"}).sampler == "uniform-softmax"
    with pytest.raises(NegspaceError, match="needs (--)?sampler full"):
        make_config({**base, "sampler": "uniform"})


def test_bsl_through_the_objective_and_training(tmp_path):
    """loss = "bsl" from a configuration: the Objective the runs build gives the bilateral formula
    by hand (two temperatures) on per-row negatives, and a run with it learns."""
    from negspace.pipeline.build import build_objective
    from negspace.pipeline.fit import run_training
    from negspace.config import make_config
    inter = random_interactions(n_users=50, n_items=70, density=0.15, seed=3, dense_user=False)
    users, items = inter.pairs()
    csv = tmp_path / "toy.csv"
    csv.write_text("user,item\n" + "\n".join(f"{u},{i}" for u, i in zip(users, items)) + "\n")
    values = dict(dataset=str(csv), model="mf", loss="bsl", sampler="uniform", negatives=8,
                  temperature=0.2, negative_temperature=0.1, dim=16, batch_size=64, lr=0.05,
                  seed=1, validation=0.0, progress=False, threads=1)
    cfg = make_config({**values, "epochs": 8})
    objective = build_objective(cfg)
    model = MF(inter.n_users, inter.n_items, 4, measure="cosine", init_std=0.5)
    u, i = torch.tensor([0, 3, 7]), torch.tensor([1, 2, 5])
    neg = torch.tensor([[4, 6, 9], [0, 1, 8], [2, 3, 11]])
    loss = objective(model, u, i, neg)
    with torch.no_grad():
        uv = model.user_vectors(u)
        pos = (uv * model.item_vectors(i)).sum(1).tolist()
        scores = torch.einsum("bd,bnd->bn", uv, model.item_vectors(neg)).tolist()
    expected = [-p / 0.2 + (0.1 / 0.2) * math.log(sum(math.exp(x / 0.1) for x in row))
                for p, row in zip(pos, scores)]
    assert loss.item() == pytest.approx(float(np.mean(expected)), rel=1e-5)
    trained = run_training(cfg)
    untrained = run_training(make_config({**values, "epochs": 1, "lr": 1e-9}))
    losses = [row["loss"] for row in trained.history]
    assert losses[-1] < losses[0]
    assert trained.metrics["ndcg@50"] > untrained.metrics["ndcg@50"] + 0.02  # 0.333 vs 0.286
