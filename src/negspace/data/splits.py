"""Seeded per-user splits: k-fold cross-validation and a validation hold-out carved from training."""

from __future__ import annotations

import numpy as np

from negspace.data.interactions import Interactions
from negspace.errors import NegspaceError


def _rank_within_user(inter: Interactions, rng: np.random.Generator) -> np.ndarray:
    """A random permutation rank (0..deg-1) of each interaction within its user's row."""
    users, _ = inter.pairs()
    order = np.lexsort((rng.random(inter.nnz), users))
    rank = np.empty(inter.nnz, np.int64)
    starts = inter.indptr[:-1].astype(np.int64)
    rank[order] = np.arange(inter.nnz) - np.repeat(starts, inter.user_degrees())
    return rank


def kfold_split(inter: Interactions, n_folds: int, fold: int, seed: int) -> tuple[Interactions, Interactions]:
    """Splits each user's interactions into n_folds near-equal folds; returns (train, test=fold).

    The fold assignment depends only on the seed, so folds 0..n_folds-1 of one seed partition the data.
    """
    if not 0 <= fold < n_folds:
        raise NegspaceError(f"--fold must be in 0..{n_folds - 1}, got {fold}")
    rng = np.random.default_rng(seed)
    rank = _rank_within_user(inter, rng)
    # A random offset per user spreads the remainder over the folds instead of always fold 0.
    offset = rng.integers(0, n_folds, inter.n_users)
    users, _ = inter.pairs()
    assignment = (rank + offset[users]) % n_folds
    test_mask = assignment == fold
    return inter.select(~test_mask), inter.select(test_mask)


def holdout_split(inter: Interactions, fraction: float, seed: int) -> tuple[Interactions, Interactions]:
    """Moves round(fraction * degree) interactions of each user (keeping at least one in training) to
    a validation set; returns (train, validation)."""
    if not 0.0 <= fraction < 1.0:
        raise NegspaceError(f"validation fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed + 7919)
    rank = _rank_within_user(inter, rng)
    deg = inter.user_degrees()
    n_val = np.minimum(np.round(fraction * deg).astype(np.int64), np.maximum(deg - 1, 0))
    users, _ = inter.pairs()
    val_mask = rank < n_val[users]
    return inter.select(~val_mask), inter.select(val_mask)
