"""Ranking metrics over a hit matrix; each returns one value per user.

`hits` is [n_users, K] (1 where the item at that rank is a test item, rank order), `n_relevant`
the number of test items of each user (> 0).
"""

from __future__ import annotations

import numpy as np


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def average_precision(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """AP@k = sum over hits of precision-at-rank / min(n_relevant, k)."""
    h = hits[:, :k].astype(np.float64)
    precision_at = np.cumsum(h, axis=1) / np.arange(1, h.shape[1] + 1)
    return (precision_at * h).sum(axis=1) / np.minimum(n_relevant, k)


def ndcg(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Binary-gain NDCG@k; the ideal DCG places min(n_relevant, k) hits first."""
    h = hits[:, :k].astype(np.float64)
    disc = _discounts(k)
    dcg = (h * disc[: h.shape[1]]).sum(axis=1)
    ideal = np.concatenate([[0.0], np.cumsum(disc)])[np.minimum(n_relevant, k)]
    return dcg / ideal


def recall(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Hits in the top k over all test items of the user (the LightGCN convention)."""
    return hits[:, :k].sum(axis=1) / n_relevant


def precision(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].sum(axis=1) / k


def hit_rate(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """1 when any of the top k is a test item."""
    return (hits[:, :k].sum(axis=1) > 0).astype(np.float64)


def median_rank_popularity(top_items: np.ndarray, item_counts: np.ndarray, k: int) -> np.ndarray:
    """Per user, the median training interaction count of the k recommended items (MMR's term).

    Padding (-1, fewer than k admissible items) is left out of the median.
    """
    items = top_items[:, :k]
    counts = np.where(items >= 0, item_counts[np.maximum(items, 0)], np.nan).astype(np.float64)
    return np.nanmedian(counts, axis=1)


RANKING_METRICS = {"map": average_precision, "ndcg": ndcg, "recall": recall,
                   "precision": precision, "hit": hit_rate}
