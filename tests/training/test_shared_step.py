"""The compiled shared-negative cosine step (training/shared_step.py) against the autograd step."""

import numpy as np
import pytest
import torch

from negspace.models.mf import MF
from negspace.samplers.shared import SharedNegativeSampler, positives_of
from negspace.samplers import mask_kernels
from negspace.training import shared_kernels
from negspace.training.objective import Objective
from negspace.training.optim import RowAdam, SparseFriendlyAdam
from negspace.training.shared_step import SharedCosineStep
from negspace.training.trainer import Trainer, TrainerOptions

from ..conftest import random_interactions

pytestmark = pytest.mark.skipif(not shared_kernels.AVAILABLE, reason="numba (the fast extra) missing")

OBJECTIVES = [Objective(loss="mml"), Objective(loss="ccl", margin=0.2),
              Objective(loss="mml", margins=(-0.2, 0.0, 0.3), margin_weights=(0.2, 0.3, 0.5),
                        positive_weight=2.0, negative_weight=0.5)]


def _batch(seed: int = 0, b: int = 40, n: int = 25, n_users: int = 30, n_items: int = 50):
    rng = np.random.default_rng(seed)
    users = torch.from_numpy(rng.integers(0, n_users, b))  # repeated users and items
    items = torch.from_numpy(rng.integers(0, n_items, b))
    neg = torch.from_numpy(rng.integers(0, n_items, n))
    keep = torch.from_numpy(rng.random((b, n)) > 0.1)
    keep[0] = False  # a row with every negative masked
    return users, items, neg, keep


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_loss_and_gradients_equal_autograd(objective):
    torch.manual_seed(1)
    model = MF(30, 50, 8, measure="cosine", init_std=0.5)
    users, items, neg, keep = _batch()
    loss = objective(model, users, items, neg, keep)
    loss.backward()
    step = SharedCosineStep(model, objective, RowAdam(model.sparse_parameters()))
    got, (g_u, item_grads), (u_ids, item_ids) = step.loss_and_grads(users, items, neg, keep)
    assert got == pytest.approx(loss.item(), rel=1e-5) and loss.item() > 0
    for weight, ids, grads in ((model.users.weight, u_ids, g_u),
                               (model.items.weight, item_ids, item_grads)):
        dense = torch.zeros_like(weight).index_add_(0, torch.from_numpy(ids), torch.from_numpy(grads))
        ref = weight.grad.to_dense()
        torch.testing.assert_close(dense, ref, rtol=1e-4, atol=1e-6)


def test_training_runs_agree_with_the_autograd_step():
    inter = random_interactions(n_users=40, n_items=60, seed=2)
    params = []
    for fused in (True, False):
        torch.manual_seed(0)
        model = MF(inter.n_users, inter.n_items, 8, measure="cosine", init_std=0.3)
        sampler = SharedNegativeSampler("uniform", seed=3)
        trainer = Trainer(model, sampler, Objective(loss="mml"), inter,
                          TrainerOptions(batch_size=32, negatives=20, epochs=2, lr=0.01,
                                         progress=False, fused=fused))
        assert (trainer.shared_step is not None) == fused
        trainer.fit()
        params.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*params):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_step_does_not_apply_where_it_would_differ():
    sampler = SharedNegativeSampler("uniform")
    cos = MF(5, 6, 4, measure="cosine")
    adam = SparseFriendlyAdam(cos, 0.1).row_adam
    assert SharedCosineStep.applies(cos, Objective(loss="mml"), sampler, adam)
    assert not SharedCosineStep.applies(cos, Objective(loss="mml", gor_weight=1.0), sampler, adam)
    assert not SharedCosineStep.applies(cos, Objective(loss="softmax"), sampler, adam)
    assert not SharedCosineStep.applies(MF(5, 6, 4), Objective(loss="mml"), sampler, adam)


def test_compiled_positive_mask_equals_numpy():
    inter = random_interactions(n_users=40, n_items=60, seed=4)
    rng = np.random.default_rng(1)
    users, items = rng.integers(0, 40, 100), rng.integers(0, 60, 30)
    distinct, inverse = np.unique(items, return_inverse=True)
    position = np.full(inter.n_items, -1, np.int64)
    position[distinct] = np.arange(len(distinct))
    small = np.zeros((len(users), len(distinct)), bool)
    mask_kernels.positives_mask(inter.indptr, inter.indices, users, position, small)
    np.testing.assert_array_equal(small[:, inverse], positives_of(inter, users, items))


def test_compiled_keep_mask_equals_numpy():
    inter = random_interactions(n_users=40, n_items=60, seed=5)
    rng = np.random.default_rng(2)
    users, items = rng.integers(0, 40, 100), rng.integers(0, 60, 300)  # many repeats
    head = np.full(inter.n_items, -1, np.int64)
    keep = np.ones((len(users), len(items)), bool)
    mask_kernels.keep_mask(inter.indptr, inter.indices, users, items, head,
                             np.empty(len(items), np.int64), keep)
    np.testing.assert_array_equal(keep, ~positives_of(inter, users, items))
    assert (head == -1).all()


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_shared_margin_loss_equals_the_torch_terms(objective):
    """The autograd function SimpleX and the other models use: value and gradients."""
    from negspace.training import shared_loss
    torch.manual_seed(3)
    u = torch.nn.functional.normalize(torch.randn(40, 8), dim=-1).requires_grad_()
    p = torch.nn.functional.normalize(torch.randn(40, 8), dim=-1).requires_grad_()
    n = torch.nn.functional.normalize(torch.randn(25, 8), dim=-1).requires_grad_()
    keep = torch.rand(40, 25) > 0.1
    keep[0] = False
    got = shared_loss.shared_margin_loss(u, p, n, keep, objective)
    grads = torch.autograd.grad(got, (u, p, n))
    ref = objective._cosine_terms((u * p).sum(-1), u @ n.T, keep)
    ref_grads = torch.autograd.grad(ref, (u, p, n))
    assert got.item() == pytest.approx(ref.item(), rel=1e-5)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
