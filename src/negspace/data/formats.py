"""The two on-disk layouts read into a `Dataset`, with binarisation and filtering (`Filters`, in
the order of `loaders.py`'s module docstring): a published train/test split folder
(`user item item ...` lines) and an interaction table (CSV/TSV/Parquet, k-fold).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from negspace.data.arrow import code_ids, filter_coded, read_coded
from negspace.data.dataset import Dataset
from negspace.data.interactions import Interactions
from negspace.data.readers import (Columns, _choose_columns, _need_file, _sniff, read_table,
                                   read_user_lists)
from negspace.errors import NegspaceError


@dataclass(frozen=True)
class Filters:
    """Binarisation and filtering; None means "not applied"."""

    rating_threshold: float | None = None
    min_user_interactions: int | None = None
    min_item_interactions: int | None = None

    def active(self) -> bool:
        return (self.rating_threshold is not None or (self.min_user_interactions or 0) > 1
                or (self.min_item_interactions or 0) > 1)

    def describe(self) -> str:
        parts = [f"rating >= {self.rating_threshold:g}" if self.rating_threshold is not None else "",
                 f"users with >= {self.min_user_interactions}" if self.min_user_interactions else "",
                 f"items with >= {self.min_item_interactions}" if self.min_item_interactions else ""]
        return ", ".join(p for p in parts if p) or "no filter"


# ---------------------------------------------------------------------------------------------
# Given split: train.txt and test.txt

def _shared_index(ids: np.ndarray, universe: np.ndarray) -> np.ndarray:
    return np.searchsorted(universe, ids)


def _binary(users: np.ndarray, items: np.ndarray, user_ids: np.ndarray,
            item_ids: np.ndarray) -> tuple[Interactions, int]:
    """Binary interactions in the given id space; returns them and the number of duplicates merged."""
    u, i = _shared_index(users, user_ids), _shared_index(items, item_ids)
    keys = np.unique(u * len(item_ids) + i)
    inter = Interactions.from_indices(keys // len(item_ids), keys % len(item_ids), user_ids, item_ids)
    return inter, len(users) - len(keys)


def load_given_split(folder: Path, name: str, filters: Filters = Filters()) -> Dataset:
    """Loads `train.txt` / `test.txt` from folder; ids are shared over the union of both files.

    Args:
        folder: holds train.txt and test.txt (or .gz).
        name: the dataset's name in the result.
        filters: must be inactive: a published split is used as it is.

    Returns:
        A "given" Dataset whose catalogue holds every user and item of either file.
    """
    if filters.active():
        raise NegspaceError(f"{name} is a published train/test split; rating threshold and "
                            f"minimum-interaction filters would change it ({filters.describe()})")
    tr_u, tr_i, tr_heads = read_user_lists(_need_file(folder, "train.txt"))
    te_u, te_i, te_heads = read_user_lists(_need_file(folder, "test.txt"))
    for file, users in (("train.txt", tr_u), ("test.txt", te_u)):
        if len(users) == 0:
            raise NegspaceError(f"{name}: {file} holds no interactions")
    user_ids = np.unique(np.concatenate([tr_heads, te_heads]))
    item_ids = np.unique(np.concatenate([tr_i, te_i]))
    train, dup_train = _binary(tr_u, tr_i, user_ids, item_ids)
    test, dup_test = _binary(te_u, te_i, user_ids, item_ids)
    train_items = train.item_counts() > 0
    test_items = test.item_counts() > 0
    train_deg, test_deg = train.user_degrees(), test.user_degrees()
    notes = {
        "train_interactions": train.nnz,
        "test_interactions": test.nnz,
        "test_items_not_in_train": int((test_items & ~train_items).sum()),
        "test_interactions_on_items_not_in_train": int((~train_items[test.indices]).sum()),
        "test_users_without_train_items": int(((test_deg > 0) & (train_deg == 0)).sum()),
        "users_without_test_items": int((test_deg == 0).sum()),
        "train_test_overlap": int(test.contains(*train.pairs()).sum()),
        "duplicates_merged": dup_train + dup_test,
    }
    return Dataset(name=name, protocol="given", interactions=train, test=test, notes=notes)


# ---------------------------------------------------------------------------------------------
# Tables: one interaction per row

def load_table(path: Path, name: str | None = None, filters: Filters = Filters(),
               names: Columns = Columns()) -> Dataset:
    """Loads a CSV/TSV/Parquet interaction file as a k-fold dataset (see `read_table`).

    Clean files stream through pyarrow (data/arrow.py: int32 codes, no Python strings); anything
    else, or a file that fails there, is read by the exact pandas path, which names the first bad
    line. A time column, when there is one, is kept (`Dataset.times`) for the time splits.
    """
    label = name or str(path)
    parquet = path.name.endswith((".parquet", ".pq"))
    try:
        sep, header = (",", True) if parquet else _sniff(path)
    except (OSError, EOFError, zlib.error):  # corrupt gzip: the pandas path says so
        sep, header = "", False

    def pick(columns: list[str], named: bool):
        try:
            return _choose_columns(path, columns, named, parquet, names)
        except NegspaceError:
            return None  # the pandas path reports it
    coded = read_coded(path, sep, header, pick)
    if coded is None:
        table = read_table(path, names)
        coded = code_ids(table.users, table.items, table.values, table.kind, table.times)
        del table
    inter, times, notes = filter_coded(
        coded, label, filters.rating_threshold, filters.min_user_interactions,
        filters.min_item_interactions, filters.describe())
    return Dataset(name=label, protocol="kfold", interactions=inter, notes=notes, times=times)
