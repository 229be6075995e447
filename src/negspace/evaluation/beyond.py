"""Beyond-accuracy metrics over top-k lists: popularity bias, catalogue coverage, concentration.

All take the [n_users, K] recommended item indices the evaluator already has (-1 marks padding)
and read the first k columns, so they cost one bincount each; definitions are in docs/guide.md.
"""

from __future__ import annotations

import numpy as np

HEAD_SHARE = 0.2
"""The head: the most popular items that together hold this share of training interactions."""


def long_tail_mask(item_counts: np.ndarray, head_share: float = HEAD_SHARE) -> np.ndarray:
    """Which items are in the long tail: outside the most popular items that together hold
    `head_share` of the training interactions (ties broken by item index).

    Args:
        item_counts: [n_items] training interactions per item.
        head_share: share of interactions the head holds, in [0, 1].

    Returns:
        [n_items] bool, True for long-tail items.
    """
    counts = np.asarray(item_counts, np.float64)
    order = np.argsort(-counts, kind="stable")
    total = counts.sum()
    tail = np.ones(len(counts), bool)
    if total > 0:
        before = np.cumsum(counts[order]) - counts[order]  # interactions above each item
        tail[order[before < head_share * total]] = False
    return tail


def average_popularity(top_items: np.ndarray, item_counts: np.ndarray, k: int) -> np.ndarray:
    """Per user, the mean training interaction count of the recommended items (ARP's term).

    Args:
        top_items: [n_users, K] item indices, best first; -1 marks padding (left out).
        item_counts: [n_items] training interactions per item.
        k: cut-off.

    Returns:
        [n_users] float64; NaN for a user with no items.
    """
    items, valid = _valid(top_items, k)
    counts = np.where(valid, np.asarray(item_counts, np.float64)[np.maximum(items, 0)], 0.0)
    n = valid.sum(axis=1)
    return np.divide(counts.sum(axis=1), n, out=np.full(len(items), np.nan), where=n > 0)


def long_tail_share(top_items: np.ndarray, tail: np.ndarray, k: int) -> np.ndarray:
    """Per user, the share of the recommended items that are long-tail items (APLT's term).

    Args:
        top_items: [n_users, K] item indices; -1 marks padding (left out).
        tail: [n_items] bool from `long_tail_mask`.
        k: cut-off.

    Returns:
        [n_users] float64; NaN for a user with no items.
    """
    items, valid = _valid(top_items, k)
    hits = (valid & np.asarray(tail)[np.maximum(items, 0)]).sum(axis=1)
    n = valid.sum(axis=1)
    return np.divide(hits, n, out=np.full(len(items), np.nan), where=n > 0)


def exposure(top_items: np.ndarray, n_items: int, k: int) -> np.ndarray:
    """[n_items] int64: in how many users' top k each item appears."""
    items, valid = _valid(top_items, k)
    return np.bincount(items[valid], minlength=n_items).astype(np.int64)


def coverage(counts: np.ndarray) -> float:
    """Share of the catalogue recommended to at least one user, from `exposure` counts."""
    return float((np.asarray(counts) > 0).mean()) if len(counts) else float("nan")


def gini(counts: np.ndarray) -> float:
    """Gini index of the exposure counts over all items (0: every item shown equally often;
    close to 1: a few items take every slot). NaN when nothing was recommended.

    Args:
        counts: [n_items] exposure counts, items never recommended included as 0.

    Returns:
        sum_i (2i - n - 1) x_i / (n sum x), x sorted ascending, i = 1..n.
    """
    x = np.sort(np.asarray(counts, np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return float("nan")
    return float(((2 * np.arange(1, n + 1) - n - 1) * x).sum() / (n * total))


def _valid(top_items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    items = np.asarray(top_items)[:, :k]
    return items, items >= 0
