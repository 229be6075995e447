import numpy as np
import pytest
import torch

from negspace.data.interactions import Interactions
from negspace.errors import NegspaceError
from negspace.models import TwoTower

from ..conftest import random_interactions


@pytest.fixture
def inter():
    return random_interactions(n_users=30, n_items=50, density=0.3, seed=1, dense_user=False)


def _features(n, width, seed):
    return np.random.default_rng(seed).normal(size=(n, width)).astype(np.float32)


def _model(inter, **kw):
    torch.manual_seed(0)
    return TwoTower(inter.n_users, inter.n_items, 8, inter, history_len=1000, **kw)


@pytest.mark.parametrize("with_features", [False, True])
def test_history_excludes_the_trained_item(inter, with_features):
    kw = dict(user_features=_features(30, 4, 0), item_features=_features(50, 3, 1)) if with_features else {}
    model = _model(inter, **kw)
    users, items = (torch.from_numpy(a) for a in inter.pairs())
    for row in range(0, len(users), 41):
        u, i = users[row:row + 1], items[row:row + 1]
        model.zero_grad()
        model.user_vectors_for_pairs(u, i).sum().backward()
        grad = model.items.weight.grad
        assert grad[i].abs().sum() == 0  # the positive's embedding is not read
        others = inter.matrix[int(u)].indices
        assert grad[others[others != int(i)]].abs().sum(1).gt(0).all()
        # equal to the vector of the same user when the item is absent from the history
        keep = ~((torch.from_numpy(inter.pairs()[0]) == u) & (torch.from_numpy(inter.pairs()[1]) == i))
        without = Interactions.from_indices(inter.pairs()[0][keep.numpy()], inter.pairs()[1][keep.numpy()],
                                            inter.user_ids, inter.item_ids)
        other = _model(without, **kw)
        other.load_state_dict(model.state_dict())
        with torch.no_grad():
            assert torch.allclose(model.user_vectors_for_pairs(u, i), other.user_vectors(u), atol=1e-6)
            assert not torch.allclose(model.user_vectors(u), other.user_vectors(u), atol=1e-6)


def test_side_features_feed_the_towers_and_cosine_is_unit(inter):
    model = _model(inter, user_features=_features(30, 4, 0), item_features=_features(50, 3, 1),
                   measure="cosine")
    with torch.no_grad():
        v = model.item_vectors(None)
        assert torch.allclose(v.norm(dim=1), torch.ones(50))
        before = model.user_vectors(None).clone()
        model.user_x[:, 0] += 1.0
        assert not torch.allclose(before, model.user_vectors(None))
        model.item_x[:, 1] += 1.0
        assert not torch.allclose(v, model.item_vectors(None))


def test_cold_user_reads_features_and_items(inter):
    model = _model(inter, user_features=_features(30, 4, 0))
    x = torch.from_numpy(_features(2, 4, 5))
    with torch.no_grad():
        a = model.cold_user_vectors(x, [[1, 2], []])
        b = model.cold_user_vectors(x, [[1, 3], []])
        assert torch.equal(a[1], b[1]) and not torch.allclose(a[0], b[0])
        # a training user's own features and whole history with the mean id vector
        u = 3
        hist = inter.matrix[u].indices.tolist()
        cold = model.cold_user_vectors(model.user_x[u:u + 1], [hist])
        want = model._user_tower(model.users.weight.mean(0, keepdim=True), model.user_x[u:u + 1],
                                 model.items(torch.tensor(hist)).mean(0, keepdim=True))
        assert torch.allclose(cold, want, atol=1e-6)


def test_bad_shapes_and_measure(inter):
    with pytest.raises(NegspaceError):
        _model(inter, user_features=_features(29, 4, 0))
    with pytest.raises(NegspaceError):
        _model(inter, measure="l2")


def test_history_mean_is_the_masked_mean_with_its_gradient(inter):
    """The fused embedding_bag path against the plain masked mean of the looked-up rows."""
    model = _model(inter)
    users = torch.tensor([0, 3, 3, 7, 29])
    exclude = torch.from_numpy(inter.pairs()[1][:5])
    from negspace.models.history import history_rows
    items, mask = history_rows(model.hist, model.hist_len, users, exclude)
    mask[1] = False  # an empty history gives the zero vector
    g = torch.randn(len(users), 8)
    fused = model._history_mean(items, mask)
    (fused * g).sum().backward()
    grad_fused, model.items.weight.grad = model.items.weight.grad.clone(), None
    m = mask.unsqueeze(-1).float()
    plain = (model.items(items) * m).sum(1) / m.sum(1).clamp(min=1.0)
    (plain * g).sum().backward()
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.items.weight.grad, grad_fused, rtol=1e-5, atol=1e-6)
    assert torch.equal(fused[1], torch.zeros(8))
