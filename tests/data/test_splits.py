"""k-fold and hold-out splits: partitions, balance per user, seeding."""

from __future__ import annotations

import numpy as np
import pytest

from negspace.data import Interactions, holdout_split, kfold_split
from negspace.errors import NegspaceError


def _random(seed: int, n_users: int = 50, n_items: int = 30) -> Interactions:
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < rng.uniform(0.02, 0.6, (n_users, 1))
    dense[:, 0] |= ~dense.any(axis=1)  # every user has at least one item
    users, items = np.nonzero(dense)
    return Interactions.from_indices(users, items, np.arange(n_users), np.arange(n_items))


def _keys(inter: Interactions) -> set[int]:
    return set(inter.keys().tolist())


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n_folds", [2, 4, 5])
def test_kfold_partitions_and_balances(seed, n_folds):
    inter = _random(seed)
    everything = _keys(inter)
    tests = []
    for fold in range(n_folds):
        train, test = kfold_split(inter, n_folds, fold, seed=seed)
        assert train.n_items == inter.n_items and test.n_users == inter.n_users  # same id space
        assert _keys(train) | _keys(test) == everything and not _keys(train) & _keys(test)
        tests.append(test)
    union = set().union(*(_keys(t) for t in tests))
    assert union == everything and sum(t.nnz for t in tests) == inter.nnz  # disjoint folds
    per_user = np.stack([t.user_degrees() for t in tests])  # folds x users
    assert (per_user.max(axis=0) - per_user.min(axis=0) <= 1).all()


def test_kfold_is_seeded():
    inter = _random(3)
    a = kfold_split(inter, 4, 1, seed=7)[1]
    b = kfold_split(inter, 4, 1, seed=7)[1]
    c = kfold_split(inter, 4, 1, seed=8)[1]
    assert _keys(a) == _keys(b) and _keys(a) != _keys(c)


def test_kfold_rejects_bad_fold():
    with pytest.raises(NegspaceError):
        kfold_split(_random(0), 4, 4, seed=0)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9])
def test_holdout_keeps_a_training_item_per_user(fraction):
    inter = _random(4)
    train, val = holdout_split(inter, fraction, seed=0)
    assert (train.user_degrees() >= 1).all()
    assert _keys(train) | _keys(val) == _keys(inter) and not _keys(train) & _keys(val)
    if fraction == 0.0:
        assert val.nnz == 0
    again = holdout_split(inter, fraction, seed=0)[1]
    assert _keys(again) == _keys(val)


def test_holdout_rejects_bad_fraction():
    with pytest.raises(NegspaceError):
        holdout_split(_random(0), 1.0, seed=0)
