"""The graph encoder (models/graph.py, `--layers`): LightGCN's propagation, its gradient, the
per-step cache, and the export over the whole training graph."""

import numpy as np
import pytest
import torch

from negspace.config import make_config
from negspace.errors import NegspaceError
from negspace.models.graph import PropagatedMF, propagate, rows_product
from negspace.registry import build_model

from ..conftest import random_interactions


@pytest.fixture(scope="module")
def toy():
    return random_interactions(n_users=25, n_items=40, density=0.2, seed=5, dense_user=False)


def _dense_lightgcn(r: np.ndarray, users: np.ndarray, items: np.ndarray, layers: int):
    """LightGCN as written in the paper: the (users + items) adjacency A, D^-1/2 A D^-1/2 applied
    K times, the layers averaged."""
    n_u, n_i = r.shape
    a = np.zeros((n_u + n_i, n_u + n_i))
    a[:n_u, n_u:], a[n_u:, :n_u] = r, r.T
    deg = np.maximum(a.sum(1), 1)
    norm = a / np.sqrt(deg)[:, None] / np.sqrt(deg)[None, :]
    e = np.vstack([users, items])
    total, layer = e.copy(), e
    for _ in range(layers):
        layer = norm @ layer
        total += layer
    total /= layers + 1
    return total[:n_u], total[n_u:]


def test_propagation_is_lightgcns(toy):
    model = PropagatedMF(toy.n_users, toy.n_items, 6, toy, layers=3)
    with torch.no_grad():
        u, i = model.propagated()
    ref_u, ref_i = _dense_lightgcn(toy.matrix.toarray() > 0, model.users.weight.detach().numpy(),
                                   model.items.weight.detach().numpy(), 3)
    assert np.allclose(u.numpy(), ref_u, atol=1e-5) and np.allclose(i.numpy(), ref_i, atol=1e-5)


def test_gradient_matches_the_dense_product(toy):
    model = PropagatedMF(toy.n_users, toy.n_items, 4, toy, layers=2)
    dense = model.graph.to_dense()
    weights = torch.randn(toy.n_users, 4), torch.randn(toy.n_items, 4)
    u, i = propagate(model.users.weight, model.items.weight, model.graph, model.graph_t, 2)
    (u * weights[0]).sum().add((i * weights[1]).sum()).backward()
    got = model.users.weight.grad.clone(), model.items.weight.grad.clone()
    eu = model.users.weight.detach().clone().requires_grad_()
    ei = model.items.weight.detach().clone().requires_grad_()
    su, si, lu, li = eu, ei, eu, ei
    for _ in range(2):
        lu, li = dense @ li, dense.T @ lu
        su, si = su + lu, si + li
    ((su / 3) * weights[0]).sum().add(((si / 3) * weights[1]).sum()).backward()
    assert torch.allclose(got[0], eu.grad, atol=1e-5) and torch.allclose(got[1], ei.grad, atol=1e-5)


def test_rows_product_is_the_slice_product(toy):
    model = PropagatedMF(toy.n_users, toy.n_items, 4, toy, layers=2)
    rows = torch.tensor([3, 0, 3, 24, 7])  # repeats, and rows of every length
    x = torch.randn(toy.n_items, 5, dtype=torch.float32)
    assert torch.allclose(rows_product(model.graph, rows, x), model.graph.to_dense()[rows] @ x,
                          atol=1e-6)


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_a_steps_user_rows_equal_the_whole_propagation_and_its_gradient(toy, layers):
    """A step computes the users' last layer for its batch only; the vectors and the gradients
    are those of propagating every user."""
    model = PropagatedMF(toy.n_users, toy.n_items, 4, toy, layers=layers, measure="cosine")
    users = torch.tensor([2, 5, 5, 11, 0])
    weights = torch.randn(len(users), 4), torch.randn(toy.n_items, 4)
    rows = model.user_vectors_for_pairs(users, users)  # the step's path: the batch's rows only
    (rows * weights[0]).sum().add((model.item_vectors(None) * weights[1]).sum()).backward()
    got = rows.detach(), model.users.weight.grad.clone(), model.items.weight.grad.clone()
    model.zero_grad()
    u, i = propagate(model.users.weight, model.items.weight, model.graph, model.graph_t, layers)
    whole = torch.nn.functional.normalize(u[users], dim=-1)
    (whole * weights[0]).sum().add((torch.nn.functional.normalize(i, dim=-1)
                                    * weights[1]).sum()).backward()
    assert torch.allclose(got[0], whole.detach(), atol=1e-6)
    assert torch.allclose(got[1], model.users.weight.grad, atol=1e-5)
    assert torch.allclose(got[2], model.items.weight.grad, atol=1e-5)


def test_one_propagation_per_step_and_a_fresh_one_after_the_update(toy):
    model = PropagatedMF(toy.n_users, toy.n_items, 4, toy, layers=1)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    users = torch.tensor([0, 1, 2])
    first = model.user_vectors(users)
    assert model.propagated()[0] is model.propagated()[0]  # the lookups share one propagation
    loss = (first * model.item_vectors(users)).sum() + model.item_vectors(None).sum()
    loss.backward()
    opt.step()
    opt.zero_grad()
    second = model.user_vectors(users)
    assert not torch.equal(first, second)  # the step moved the tables; the cache followed
    # two backwards without an update in between: each step builds its own graph
    model.user_vectors(users).sum().backward()
    model.user_vectors(users).sum().backward()


def test_the_export_reads_the_graph_it_is_given(toy):
    model = PropagatedMF(toy.n_users, toy.n_items, 4, toy, layers=2).eval()
    with torch.no_grad():
        before = model.user_vectors(None).clone()
    fewer = random_interactions(n_users=25, n_items=40, density=0.05, seed=6, dense_user=False)
    model.set_history(fewer)
    with torch.no_grad():
        after = model.user_vectors(None)
    assert not torch.allclose(before, after)


def test_the_registry_builds_it_from_the_option_and_refuses_it_elsewhere(toy):
    cfg = make_config({"model": "mf", "loss": "softmax", "sampler": "uniform", "layers": 2,
                       "dim": 8, "measure": "cosine"})
    model = build_model(cfg, toy.n_users, toy.n_items, history=toy)
    assert isinstance(model, PropagatedMF) and model.layers == 2 and model.reads_history
    assert not any(p.is_sparse for p in model.parameters())
    with torch.no_grad():  # cosine: unit rows
        assert torch.allclose(model.item_vectors(None).norm(dim=1), torch.ones(toy.n_items))
    with pytest.raises(NegspaceError, match="layers is an mf option"):
        make_config({"model": "simplex", "layers": 2})
    with pytest.raises(NegspaceError, match="read the training interactions"):
        build_model(cfg, toy.n_users, toy.n_items)
