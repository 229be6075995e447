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
    # each user holds out round(fraction x degree) items, one always staying in training
    deg = inter.user_degrees()
    want = np.minimum(np.round(fraction * deg), np.maximum(deg - 1, 0))
    assert (val.user_degrees() == want).all()
    if fraction == 0.0:
        assert val.nnz == 0
    else:  # so the share held out is the fraction, up to rounding and the kept item
        assert abs(val.nnz / inter.nnz - fraction) < 0.05
    again = holdout_split(inter, fraction, seed=0)[1]
    assert _keys(again) == _keys(val)


def test_holdout_rejects_bad_fraction():
    with pytest.raises(NegspaceError):
        holdout_split(_random(0), 1.0, seed=0)


@pytest.mark.parametrize("split", ["kfold", "given"])
def test_validation_is_carved_from_training_only(tmp_path, split):
    """Model selection never sees the test set: validation pairs are training pairs of the run
    (never test pairs), and training on fit_on + validation gives back the training part."""
    from negspace.data import load_dataset
    from negspace.pipeline.split import split_with_validation
    from negspace.config import make_config

    inter = _random(5, n_users=60, n_items=40)
    users, items = inter.pairs()
    if split == "kfold":
        path = tmp_path / "log.csv"
        path.write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in zip(users, items)))
    else:  # a published split: test.txt holds each user's last listed item
        path = tmp_path / "given"
        path.mkdir()
        rows = [inter.indices[inter.indptr[u]:inter.indptr[u + 1]] for u in range(inter.n_users)]
        (path / "train.txt").write_text("".join(f"{u} {' '.join(map(str, r[:-1]))}\n"
                                                for u, r in enumerate(rows) if len(r) > 1))
        (path / "test.txt").write_text("".join(f"{u} {r[-1]}\n" for u, r in enumerate(rows)))
    dataset = load_dataset(str(path))
    for seed in (0, 1):
        cfg = make_config(dict(dataset=str(path), validation=0.3, seed=seed, fold=seed))
        train, test, fit_on, validation = split_with_validation(cfg, dataset)
        assert validation.nnz > 0 and test.nnz > 0
        assert not _keys(validation) & _keys(test)
        assert not _keys(fit_on) & _keys(test) and not _keys(fit_on) & _keys(validation)
        assert _keys(fit_on) | _keys(validation) == _keys(train)
        assert not _keys(train) & _keys(test)
        assert train.n_items == test.n_items == validation.n_items  # one id space
