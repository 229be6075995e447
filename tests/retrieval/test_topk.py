"""Exact top-k with training items masked: brute force, chunking, candidates, padding."""

import numpy as np
import pytest
import torch

from negspace.data.interactions import Interactions
from negspace.errors import NegspaceError
from negspace.retrieval import csr_entries, topk_items


def _inter(mask: np.ndarray) -> Interactions:
    return Interactions.from_indices(*np.nonzero(mask), np.arange(mask.shape[0]),
                                     np.arange(mask.shape[1]))


def _case(seed: int = 0, n_users: int = 25, n_items: int = 60):
    rng = np.random.default_rng(seed)
    train = rng.random((n_users, n_items)) < 0.3
    train[0, :] = True
    train[0, [4, 9]] = False  # user 0 has 2 admissible items
    train[1, :] = False  # user 1 has none masked
    scores = rng.standard_normal((n_users, n_items)).astype(np.float32)  # no ties
    return scores, train


def _brute(scores, train, users, k, candidates=None):
    """Per user: items sorted by score, minus training items and non-candidates, padded."""
    items = np.full((len(users), k), -1)
    for row, u in enumerate(users):
        ranked = [i for i in np.argsort(-scores[u]) if not train[u, i]
                  and (candidates is None or i in set(candidates.tolist()))][:k]
        items[row, :len(ranked)] = ranked
    return items


@pytest.mark.parametrize("k", [1, 5, 20])
def test_matches_brute_force_and_never_returns_training_items(k):
    scores, train = _case()
    users = np.array([3, 0, 1, 7, 3, 24, 11])  # any order, repeats allowed
    items, top = topk_items(lambda u: torch.from_numpy(scores[u.numpy()]), users, k,
                            exclude=_inter(train))
    assert items.dtype == np.int64 and top.dtype == np.float32 and items.shape == (len(users), k)
    np.testing.assert_array_equal(items, _brute(scores, train, users, k))
    real = items >= 0
    rows = np.broadcast_to(users[:, None], items.shape)
    assert not train[rows[real], items[real]].any()
    np.testing.assert_array_equal(top[real], scores[rows[real], items[real]])
    assert all((np.diff(row[ok]) < 0).all() for row, ok in zip(top, real))  # best first


def test_chunked_equals_unchunked():
    scores, train = _case(1, n_users=40)
    fn = lambda u: torch.from_numpy(scores[u.numpy()])  # noqa: E731
    users = np.arange(40)
    whole = topk_items(fn, users, 10, exclude=_inter(train), chunk_size=4096)
    for chunk in (1, 3, 16, 39):
        part = topk_items(fn, users, 10, exclude=_inter(train), chunk_size=chunk)
        np.testing.assert_array_equal(part[0], whole[0])
        np.testing.assert_array_equal(part[1], whole[1])


def test_candidates_restrict_the_ranking():
    scores, train = _case(2)
    cand = np.array([50, 3, 4, 9, 17, 3, 22, 59, 0, 31])  # unsorted, with a duplicate
    users = np.arange(25)
    fn = lambda u: torch.from_numpy(scores[u.numpy()])  # noqa: E731
    items, _ = topk_items(fn, users, 6, exclude=_inter(train), candidates=cand)
    np.testing.assert_array_equal(items, _brute(scores, train, users, 6, np.unique(cand)))
    assert np.isin(items[items >= 0], cand).all()
    items, _ = topk_items(fn, users, 6, exclude=None, candidates=cand)
    no_train = np.zeros_like(train)
    np.testing.assert_array_equal(items, _brute(scores, no_train, users, 6, np.unique(cand)))


def test_padding_when_fewer_admissible_items_than_k():
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0], [1.0, 2.0, 3.0, 4.0], [1.0, -np.inf, 0.0, 2.0]])
    train = _inter(np.array([[1, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]], bool))
    items, top = topk_items(lambda u: scores[u], np.arange(3), 6, exclude=train)
    # user 0: only item 3 left; user 1: all 4 items; user 2: item 1 scores -inf, so it is padding
    np.testing.assert_array_equal(items, [[3, -1, -1, -1, -1, -1],
                                          [3, 2, 1, 0, -1, -1],
                                          [3, 0, 2, -1, -1, -1]])
    np.testing.assert_array_equal(top[0], [2.0] + [-np.inf] * 5)
    assert np.isneginf(top[items == -1]).all() and np.isfinite(top[items >= 0]).all()
    items, _ = topk_items(lambda u: scores[u], np.array([0]), 2, exclude=train, candidates=[0, 1])
    np.testing.assert_array_equal(items, [[-1, -1]])  # every candidate is a training item


def test_leaves_the_callers_tensor_unchanged():
    scores, train = _case(3)
    cached = torch.from_numpy(scores.copy())
    before = cached.clone()
    for fn in (lambda u: cached, lambda u: cached.detach(), lambda u: cached[: len(u)]):
        items, _ = topk_items(fn, np.arange(25), 5, exclude=_inter(train), chunk_size=25)
        np.testing.assert_array_equal(items, _brute(scores, train, np.arange(25), 5))
        assert torch.equal(cached, before)


def test_other_dtypes_and_layouts():
    scores, train = _case(4)
    want = _brute(scores, train, np.arange(25), 5)
    as64 = torch.from_numpy(scores.astype(np.float64))
    transposed = torch.from_numpy(np.ascontiguousarray(scores.T)).T  # non-contiguous
    for fn in (lambda u: as64[u], lambda u: transposed[u.numpy()]):
        items, _ = topk_items(fn, np.arange(25), 5, exclude=_inter(train))
        np.testing.assert_array_equal(items, want)


def test_nan_scores_raise_unless_masked():
    scores = torch.tensor([[np.nan, 1.0, 2.0]])
    train = _inter(np.array([[1, 0, 0]], bool))
    items, _ = topk_items(lambda u: scores, np.array([0]), 2, exclude=train)  # NaN is masked
    np.testing.assert_array_equal(items, [[2, 1]])
    with pytest.raises(NegspaceError, match="NaN"):
        topk_items(lambda u: scores, np.array([0]), 2, exclude=None)


def test_bad_arguments():
    train = _inter(np.eye(2, 3, dtype=bool))
    with pytest.raises(ValueError):
        topk_items(lambda u: torch.zeros(len(u), 4), np.arange(2), 2, exclude=train)
    with pytest.raises(ValueError):
        topk_items(lambda u: torch.zeros(len(u), 3), np.arange(2), 2, exclude=None, candidates=[3])
    with pytest.raises(ValueError):
        topk_items(lambda u: torch.zeros(len(u), 3), np.arange(2), -1, exclude=None)
    items, top = topk_items(lambda u: torch.zeros(len(u), 3), np.arange(2), 0, exclude=None)
    assert items.shape == top.shape == (2, 0)


def test_csr_entries_matches_a_loop():
    _, train = _case(5)
    m = _inter(train).matrix
    rows = np.array([4, 0, 4, 1, 20])
    pos, cols = csr_entries(m.indptr, m.indices, rows)
    want = [(p, c) for p, r in enumerate(rows) for c in np.flatnonzero(train[r])]
    assert list(zip(pos.tolist(), cols.tolist())) == want
