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


# ---------------------------------------------------------------------------------------------
# Splits by time (the file's time column, `Dataset.times`, aligned with the CSR order)

def parse_time_cut(cut: str | float, times: np.ndarray | None = None) -> float:
    """The time at which a global time split cuts.

    Args:
        cut: a quantile in (0, 1) of the interactions' times ("0.8": the latest 20% are held
            out); a number >= 1, a time in the file's own unit (e.g. Unix seconds); or a date or
            date-time ("2015-06-01", "2015-06-01T12:00"), as Unix seconds.
        times: the times the quantile is taken over (needed for a quantile only).

    Returns:
        The cut: interactions at or after it are held out, those before it kept.
    """
    try:
        value = float(cut)
    except (TypeError, ValueError):
        try:
            return float((np.datetime64(str(cut), "s") - np.datetime64(0, "s")) / np.timedelta64(1, "s"))
        except ValueError:
            raise NegspaceError(f"--time-cut must be a quantile in (0, 1), a time (a number >= 1) "
                                f"or a date like 2015-06-01; got {cut!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise NegspaceError(f"--time-cut must be a quantile in (0, 1), a time (a number >= 1) "
                            f"or a date; got {cut!r}")
    if value >= 1:
        return value
    if times is None or len(times) == 0:
        raise NegspaceError("a time-cut quantile needs interaction times")
    return float(np.quantile(times, value, method="higher"))


def time_split(inter: Interactions, times: np.ndarray, cut: str | float, what: str = "test"
               ) -> tuple[Interactions, Interactions, np.ndarray]:
    """One global cut in time: interactions at or after the cut are held out.

    Args:
        inter: interactions.
        times: time of each interaction, in `inter`'s CSR order.
        cut: see `parse_time_cut`.
        what: the held-out part's name, for errors ("test" or "validation").

    Returns:
        (kept, held out, times of the kept ones); every kept interaction is strictly earlier
        than every held-out one.
    """
    _check_times(inter, times)
    t = parse_time_cut(cut, times)
    held = times >= t
    if held.all() or not held.any():
        raise NegspaceError(f"the time cut {cut} leaves no {'training' if held.all() else what} "
                            f"interactions (times range from {times.min():g} to {times.max():g})")
    return inter.select(~held), inter.select(held), times[~held]


def last_split(inter: Interactions, times: np.ndarray, n: int
               ) -> tuple[Interactions, Interactions, np.ndarray]:
    """Each user's last n interactions by time are held out; at least one stays (a user with
    n or fewer keeps the earliest). Ties in time are broken by item index, so it is deterministic.

    Returns:
        (kept, held out, times of the kept ones); for every user, every held-out interaction is
        at or after every kept one.
    """
    _check_times(inter, times)
    if n < 1:
        raise NegspaceError(f"--last-n must be >= 1; got {n}")
    users, items = inter.pairs()
    order = np.lexsort((items, times, users))  # by user, then time, then item
    deg = inter.user_degrees()
    rank = np.empty(inter.nnz, np.int64)  # position within the user's row, by time
    rank[order] = np.arange(inter.nnz) - np.repeat(inter.indptr[:-1].astype(np.int64), deg)
    n_held = np.minimum(n, np.maximum(deg - 1, 0))
    held = rank >= (deg - n_held)[users]
    return inter.select(~held), inter.select(held), times[~held]


def _check_times(inter: Interactions, times: np.ndarray | None) -> None:
    if times is None:
        raise NegspaceError("--split time and --split last need a time column (timestamp, time, "
                            "date...) in the interaction file; this dataset has none")
    if len(times) != inter.nnz:
        raise ValueError(f"{len(times)} times for {inter.nnz} interactions")


def sample_users(held: Interactions, n: int, seed: int) -> Interactions:
    """Keeps the held-out interactions of a seeded sample of n users (of those that have any):
    validation that costs n users' rankings instead of all of them.

    Args:
        held: validation interactions.
        n: users kept; 0, or at least the number of users with held-out items, keeps all.
        seed: the sample's seed (the same users every epoch).
    """
    candidates = np.flatnonzero(held.user_degrees() > 0)
    if n <= 0 or n >= len(candidates):
        return held
    chosen = np.random.default_rng(seed + 104729).choice(candidates, n, replace=False)
    keep = np.zeros(held.n_users, bool)
    keep[chosen] = True
    users, _ = held.pairs()
    return held.select(keep[users])
