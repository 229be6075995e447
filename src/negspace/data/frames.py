"""Interactions from what a Python caller holds: a pandas DataFrame, a scipy sparse matrix, a file
or dataset name; and a per-user time split of a DataFrame."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from negspace.data.interactions import Interactions
from negspace.errors import NegspaceError


def interactions_from(data: Any, *, user: str | None = None, item: str | None = None,
                      weight: str | None = None, min_weight: float | None = None,
                      user_ids: np.ndarray | None = None, item_ids: np.ndarray | None = None,
                      data_dir: str | None = None) -> Interactions:
    """Builds Interactions from a DataFrame, a sparse matrix, a path or dataset name.

    Args:
        data: a DataFrame with `user` and `item` columns (any hashable ids); a scipy sparse
            users x items matrix (nonzeros are interactions); a file or dataset name (as
            `negspace train --dataset` reads it; for a given split, its training part); or
            Interactions (returned as they are unless other id maps are given).
        user, item: column names of a DataFrame; default: found by name as in a file
            (user, user_id, userId, uid, ...; item, item_id, itemId, movieId, artist, ...).
        weight: optional weight column (e.g. play counts or ratings); summed over duplicate rows.
        min_weight: drop rows whose weight is below this (needs `weight`).
        user_ids, item_ids: fixed id maps (e.g. a trained model's); rows with other ids are
            dropped. Default: the ids present, numbered in sorted order (for a matrix: 0..n-1).
        data_dir: folder of named datasets, for a dataset name.

    Returns:
        Interactions; every (user, item) pair once, with its summed weight.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"user": ["ann", "bob", "ann"], "item": ["x", "y", "y"]})
    >>> inter = interactions_from(df)
    >>> inter.n_users, inter.n_items, inter.nnz
    (2, 2, 3)
    """
    if isinstance(data, Interactions):
        if _same(data.user_ids, user_ids) and _same(data.item_ids, item_ids):
            return data
        users, items = data.pairs()  # another id space: map the pairs by external id
        frame = pd.DataFrame({"user": data.user_ids[users], "item": data.item_ids[items],
                              "w": data.matrix.data})
        return _from_frame(frame, "user", "item", "w", None, user_ids, item_ids)
    if isinstance(data, pd.DataFrame):
        user, item = frame_columns(data, user, item)
        return _from_frame(data, user, item, weight, min_weight, user_ids, item_ids)
    if sp.issparse(data):
        m = sp.csr_matrix(data)
        if m.ndim != 2:
            raise NegspaceError("a sparse interaction matrix must be 2-d (users x items)")
        m.eliminate_zeros()
        uids = np.arange(m.shape[0]) if user_ids is None else np.asarray(user_ids)
        iids = np.arange(m.shape[1]) if item_ids is None else np.asarray(item_ids)
        if (len(uids), len(iids)) != m.shape:
            raise NegspaceError(f"matrix shape {m.shape} does not match the id maps "
                                f"({len(uids)}, {len(iids)})")
        return Interactions(m.astype(np.float32), uids, iids)
    if isinstance(data, (str, Path)):
        from negspace.data.loaders import load_dataset
        inter = load_dataset(str(data), data_dir).interactions
        if user_ids is None and item_ids is None:
            return inter
        users, items = inter.pairs()
        frame = pd.DataFrame({"user": inter.user_ids[users], "item": inter.item_ids[items]})
        return _from_frame(frame, "user", "item", None, None, user_ids, item_ids)
    raise NegspaceError(f"cannot build interactions from {type(data).__name__}: pass a "
                        "DataFrame, a scipy sparse matrix, a file path or a dataset name")


def frame_columns(df: pd.DataFrame, user: str | None, item: str | None) -> tuple[str, str]:
    """The user and item columns of a DataFrame: the given names, else the first column named
    like one (the names a file's header may use, `data/readers.py`)."""
    from negspace.data.readers import _ITEM_COLUMNS, _USER_COLUMNS, _pick

    columns = list(df.columns)
    found = (user if user is not None else _pick(columns, _USER_COLUMNS),
             item if item is not None else _pick(columns, _ITEM_COLUMNS))
    for name, what in zip(found, ("user", "item")):
        if name is None:
            raise NegspaceError(f"no {what} column among {[str(c) for c in columns]}: name it "
                                f"with {what}= (found by name: {what}, {what}_id, {what}Id, ...)")
    return found


def _from_frame(df: pd.DataFrame, user: str, item: str, weight: str | None,
                min_weight: float | None, user_ids: np.ndarray | None,
                item_ids: np.ndarray | None) -> Interactions:
    missing = [c for c in (user, item, weight) if c is not None and c not in df.columns]
    if missing:
        raise NegspaceError(f"no column {missing[0]!r} among {[str(c) for c in df.columns]}")
    if df[[user, item]].isna().to_numpy().any():
        raise NegspaceError(f"missing ids in column {user!r} or {item!r}")
    w = None
    if weight is not None:
        w = pd.to_numeric(df[weight], errors="coerce").to_numpy(np.float64)
        if np.isnan(w).any():
            raise NegspaceError(f"column {weight!r} holds a non-numeric weight")
    elif min_weight is not None:
        raise NegspaceError("min_weight needs a weight column")
    keep = np.ones(len(df), bool) if w is None or min_weight is None else w >= min_weight
    users, items = df[user].to_numpy()[keep], df[item].to_numpy()[keep]
    w = None if w is None else w[keep]
    if user_ids is None and item_ids is None:
        return Interactions.from_external(users, items, w)
    uids = np.unique(users) if user_ids is None else np.asarray(user_ids)
    iids = np.unique(items) if item_ids is None else np.asarray(item_ids)
    u, i = _positions(uids, users), _positions(iids, items)
    known = (u >= 0) & (i >= 0)
    return Interactions.from_indices(u[known], i[known], uids, iids,
                                     None if w is None else w[known])


def _same(ids: np.ndarray, wanted: np.ndarray | None) -> bool:
    return wanted is None or (len(ids) == len(wanted)
                              and bool((ids.astype(str) == np.asarray(wanted).astype(str)).all()))


def _positions(ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of each value in `ids` (compared as strings, as the CLI does), -1 when absent."""
    keys = ids.astype(str)
    order = np.argsort(keys, kind="stable")
    wanted = np.asarray(values).astype(str)
    pos = np.minimum(np.searchsorted(keys[order], wanted), len(keys) - 1) if len(keys) else None
    if pos is None:
        return np.full(len(wanted), -1, np.int64)
    found = keys[order][pos] == wanted
    return np.where(found, order[pos], -1).astype(np.int64)


def time_split(df: pd.DataFrame, test_fraction: float = 0.2, *, user: str | None = None,
               item: str | None = None, timestamp: str = "timestamp"
               ) -> tuple[Interactions, Interactions]:
    """Moves each user's latest interactions (by `timestamp`) to a test set.

    Args:
        df: interaction rows.
        test_fraction: share of each user's rows held out (rounded; at least one row stays in
            training).
        user, item, timestamp: column names (user and item found by name when not given); the
            timestamp column may hold numbers or datetimes.

    Returns:
        (train, test) in one id space (every user and item of `df`); ties in time keep row order.
    """
    user, item = frame_columns(df, user, item)
    if timestamp not in df.columns:
        raise NegspaceError(f"no column {timestamp!r} among {[str(c) for c in df.columns]}")
    if not 0.0 <= test_fraction < 1.0:
        raise NegspaceError(f"test_fraction must be in [0, 1); got {test_fraction}")
    ordered = df.sort_values([user, timestamp], kind="stable")
    rank = ordered.groupby(user, sort=False).cumcount().to_numpy()
    size = ordered.groupby(user, sort=False)[item].transform("size").to_numpy()
    n_test = np.minimum(np.round(test_fraction * size), size - 1)
    test_rows = rank >= size - n_test
    everyone = interactions_from(ordered, user=user, item=item)
    def part(mask: np.ndarray) -> Interactions:
        return interactions_from(ordered[mask], user=user, item=item,
                                 user_ids=everyone.user_ids, item_ids=everyone.item_ids)
    return part(~test_rows), part(test_rows)
