import numpy as np
import pytest
import torch
import torch.nn.functional as F

from negspace.errors import NegspaceError
from negspace.models import SimpleX

from ..conftest import random_interactions


@pytest.fixture
def inter():
    return random_interactions(n_users=30, n_items=50, density=0.3, seed=1, dense_user=False)


@pytest.mark.parametrize("aggregator", ["mean", "user_attention", "self_attention"])
def test_history_never_contains_the_trained_positive(inter, aggregator):
    model = SimpleX(inter.n_users, inter.n_items, 8, inter, aggregator=aggregator, gamma=0.3,
                    history_len=1000, dropout=0.0)
    users, items = (torch.from_numpy(a) for a in inter.pairs())
    hist, mask = model.history(users, items)
    assert not (mask & (hist == items[:, None])).any()
    # without the exclusion the positive is in its own (uncapped) history: the check can fail
    hist, mask = model.history(users, None)
    assert (mask & (hist == items[:, None])).any(dim=1).all()
    # the training user vector does not depend on the positive's embedding at all
    for row in range(0, len(users), 37):
        model.zero_grad()
        model.user_vectors_for_pairs(users[row:row + 1], items[row:row + 1]).sum().backward()
        grad = model.items.weight.grad.to_dense()
        assert torch.all(grad[items[row]] == 0)
        others = hist[row][mask[row] & (hist[row] != items[row])]
        assert grad[others].abs().sum() > 0


def test_history_is_a_capped_subset_of_the_training_items(inter):
    model = SimpleX(inter.n_users, inter.n_items, 8, inter, history_len=5)
    deg = inter.user_degrees()
    users = torch.arange(inter.n_users)
    hist, mask = model.history(users)
    assert hist.shape[1] == 5
    assert torch.equal(mask.sum(1), torch.from_numpy(np.minimum(deg, 5)))
    assert inter.contains(users[:, None].numpy(), hist.numpy())[mask.numpy()].all()


def test_gamma_one_is_the_normalised_id_embedding(inter):
    model = SimpleX(inter.n_users, inter.n_items, 8, inter, gamma=1.0)
    users = torch.arange(5)
    assert torch.allclose(model.user_vectors(users), F.normalize(model.users(users), dim=-1))


@pytest.mark.parametrize("aggregator", ["mean", "user_attention", "self_attention"])
def test_scoring_vectors_are_unit_and_chunk_independent(inter, aggregator):
    model = SimpleX(inter.n_users, inter.n_items, 8, inter, aggregator=aggregator).eval()
    with torch.no_grad():
        all_users = model.user_vectors(None)
        some = model.user_vectors(torch.tensor([3, 7]))
    assert torch.allclose(all_users.norm(dim=-1), torch.ones(inter.n_users), atol=1e-5)
    assert torch.allclose(all_users[[3, 7]], some, atol=1e-6)
    assert torch.allclose(model.item_vectors(None).norm(dim=-1), torch.ones(inter.n_items), atol=1e-5)


def test_mean_aggregator_hand_computed(inter):
    model = SimpleX(inter.n_users, inter.n_items, 8, inter, gamma=0.25, history_len=1000)
    u = torch.tensor([2])
    items = torch.from_numpy(inter.indices[inter.indptr[2]:inter.indptr[3]].astype(np.int64))
    expected = 0.25 * model.users.weight[2] + 0.75 * model.w_v(model.items.weight[items].mean(0))
    assert torch.allclose(model.user_vectors(u)[0], F.normalize(expected, dim=0), atol=1e-6)


def test_bad_options(inter):
    with pytest.raises(NegspaceError, match="aggregator"):
        SimpleX(inter.n_users, inter.n_items, 8, inter, aggregator="max")
    with pytest.raises(NegspaceError, match="gamma"):
        SimpleX(inter.n_users, inter.n_items, 8, inter, gamma=1.5)
