"""Time splits (--split time, --split last) and the validation carved from their training part:
no held-out interaction is earlier than a kept one, validation never touches the test set."""

from __future__ import annotations

import numpy as np
import pytest

from negspace.data import Interactions
from negspace.data.dataset import Dataset
from negspace.data.splits import last_split, parse_time_cut, sample_users, time_split
from negspace.errors import NegspaceError
from negspace.pipeline.split import split_with_validation
from negspace.config import make_config


def _data(seed: int = 0, n_users: int = 60, n_items: int = 40) -> tuple[Interactions, np.ndarray]:
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < 0.3
    dense[:, 0] = True
    users, items = np.nonzero(dense)
    inter = Interactions.from_indices(users, items, np.arange(n_users), np.arange(n_items))
    times = rng.integers(0, 1000, inter.nnz).astype(np.float64)  # CSR order = nonzero order
    return inter, times


def _keys(inter: Interactions) -> set[int]:
    return set(inter.keys().tolist())


def _times_of(inter: Interactions, whole: Interactions, times: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(whole.keys(), inter.keys())
    return times[pos]


def test_global_time_cut_by_quantile_and_by_time():
    inter, times = _data()
    train, test, train_times = time_split(inter, times, "0.8")
    assert _keys(train) | _keys(test) == _keys(inter) and not _keys(train) & _keys(test)
    assert _times_of(train, inter, times).max() < _times_of(test, inter, times).min()
    assert np.array_equal(train_times, _times_of(train, inter, times))
    assert 0.15 < test.nnz / inter.nnz < 0.25
    _, test2, _ = time_split(inter, times, "500")
    assert (_times_of(test2, inter, times) >= 500).all()


def test_time_cut_accepts_dates_and_refuses_nonsense():
    assert parse_time_cut("1970-01-02") == 86400.0
    with pytest.raises(NegspaceError, match="time_cut"):
        parse_time_cut("soon")
    inter, times = _data()
    with pytest.raises(NegspaceError, match="no test"):
        time_split(inter, times, "5000")


@pytest.mark.parametrize("n", [1, 3])
def test_last_n_per_user(n):
    inter, times = _data(1)
    train, test, _ = last_split(inter, times, n)
    assert _keys(train) | _keys(test) == _keys(inter) and not _keys(train) & _keys(test)
    deg = inter.user_degrees()
    assert np.array_equal(test.user_degrees(), np.minimum(n, deg - 1))
    assert (train.user_degrees() >= 1).all()
    tr_u, _ = train.pairs()
    te_u, _ = test.pairs()
    tr_t, te_t = _times_of(train, inter, times), _times_of(test, inter, times)
    for u in range(inter.n_users):
        if (te_u == u).any():
            assert tr_t[tr_u == u].max() <= te_t[te_u == u].min()


@pytest.mark.parametrize("split", ["time", "last", "kfold"])
def test_validation_is_carved_from_training_only(split):
    inter, times = _data(2)
    ds = Dataset("synthetic", "kfold", inter, times=times)
    cfg = make_config({"split": split, "validation": 0.2, "last_n": 2})
    train, test, fit_on, validation = split_with_validation(cfg, ds)
    assert not _keys(train) & _keys(test)
    assert _keys(fit_on) | _keys(validation) == _keys(train)
    assert not _keys(fit_on) & _keys(validation) and not _keys(validation) & _keys(test)
    assert validation.nnz > 0
    if split == "time":
        val_t, test_t = _times_of(validation, inter, times), _times_of(test, inter, times)
        assert _times_of(fit_on, inter, times).max() < val_t.min() and val_t.max() < test_t.min()


def test_time_splits_need_times_and_given_splits_refuse_them():
    inter, _ = _data()
    with pytest.raises(NegspaceError, match="time column"):
        split_with_validation(make_config({"split": "time"}), Dataset("d", "kfold", inter))
    given = Dataset("g", "given", inter, test=inter)
    with pytest.raises(NegspaceError, match="published"):
        split_with_validation(make_config({"split": "last"}), given)


def test_val_users_sample_is_seeded_and_sized():
    inter, _ = _data(3)
    a, b = sample_users(inter, 10, 0), sample_users(inter, 10, 0)
    assert int((a.user_degrees() > 0).sum()) == 10 and _keys(a) == _keys(b)
    assert _keys(a) <= _keys(inter)
    assert sample_users(inter, 0, 0) is inter
