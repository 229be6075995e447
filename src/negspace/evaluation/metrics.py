"""Ranking metrics over a hit matrix: the definitions docs/guide.md ("Metrics") lists.

Every function returns one value per user; the caller averages. `hits` is [n_users, K] in rank
order (true / 1 where the item at that rank is one of the user's test items), `n_relevant` the
number of test items of each user, which must be > 0. A metric at cut-off k reads the first k
columns; a matrix with fewer than k columns (fewer admissible items than k) counts the missing
ranks as misses.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

MetricFn = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


def _top(hits: np.ndarray, k: int) -> np.ndarray:
    return np.asarray(hits)[:, :k].astype(np.float64)


def _ideal(n_relevant: np.ndarray, k: int) -> np.ndarray:
    return np.minimum(np.asarray(n_relevant, np.int64), k)


def average_precision(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """AP@k: sum over the hits in the top k of precision-at-that-rank, / min(n_relevant, k).
    Arguments and result as `recall`'s.
    """
    h = _top(hits, k)
    precision_at = np.cumsum(h, axis=1) / np.arange(1, h.shape[1] + 1)
    return (precision_at * h).sum(axis=1) / _ideal(n_relevant, k)


def ndcg(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k with binary gains: DCG = sum hit_r / log2(r + 1) over ranks r = 1..k, divided by
    the DCG of min(n_relevant, k) hits placed first.
    Arguments and result as `recall`'s.
    """
    h = _top(hits, k)
    discount = 1.0 / np.log2(np.arange(2, k + 2))  # ranks 1..k
    dcg = h @ discount[:h.shape[1]]
    ideal = np.concatenate([[0.0], np.cumsum(discount)])  # ideal[m] = DCG of m leading hits
    return dcg / ideal[_ideal(n_relevant, k)]


def recall(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Recall@k: hits in the top k / n_relevant (all test items; the LightGCN convention, so a
    user with more than k test items cannot reach 1).

    Args:
        hits: [n_users, K] hit indicators in rank order.
        n_relevant: [n_users] test items per user (> 0).
        k: cut-off.

    Returns:
        [n_users] float64.
    """
    return _top(hits, k).sum(axis=1) / np.asarray(n_relevant, np.float64)


def precision(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Precision@k: hits in the top k / k (padding slots count as misses). Arguments and result
    as `recall`'s (`n_relevant` unused: one signature for every metric)."""
    return _top(hits, k).sum(axis=1) / k


def hit_rate(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """HitRate@k: 1 when any of the top k is a test item, else 0. Arguments and result as
    `recall`'s (`n_relevant` unused)."""
    return (_top(hits, k).sum(axis=1) > 0).astype(np.float64)


def median_rank_popularity(top_items: np.ndarray, item_counts: np.ndarray, k: int) -> np.ndarray:
    """Per user, the median training interaction count of the k recommended items (the term
    that MMR, "mean of median rank", averages over users; lower means less popularity bias).

    Args:
        top_items: [n_users, K] recommended item indices, best first; -1 marks padding.
        item_counts: [n_items] training interactions per item.
        k: cut-off.

    Returns:
        [n_users] float64; padding is left out of the median, NaN for a user with no items.
    """
    items = np.asarray(top_items)[:, :k]
    counts = np.asarray(item_counts, np.float64)[np.maximum(items, 0)]
    valid = items >= 0
    if valid.all():
        return np.median(counts, axis=1)  # the usual case; much faster than nanmedian
    out = np.full(len(items), np.nan)
    some = valid.any(axis=1)
    out[some] = np.nanmedian(np.where(valid, counts, np.nan)[some], axis=1)
    return out


RANKING_METRICS: dict[str, MetricFn] = {
    "map": average_precision, "ndcg": ndcg, "recall": recall, "precision": precision,
    "hit": hit_rate,
}
"""Metric name (as used in the evaluator's keys) -> per-user function."""
