"""Full-ranking evaluation: every item scored, training items masked, metrics at several K."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from negspace.data.interactions import Interactions
from negspace.evaluation.metrics import RANKING_METRICS, median_rank_popularity
from negspace.retrieval.topk import ScoreFn, topk_items


def evaluate(score_fn: ScoreFn, train: Interactions, test: Interactions,
             ks: Sequence[int] = (20, 50), chunk_size: int = 2048) -> dict[str, float]:
    """Metrics of a scorer on the test interactions.

    Args:
        score_fn: user indices -> [len, n_items] scores.
        train: the user's training items (masked, and the popularity used by MMR).
        test: held-out interactions in the same id space.
        ks: cut-offs.
        chunk_size: users ranked at a time.

    Returns:
        Flat dict: `map@K`, `ndcg@K`, `recall@K`, `precision@K`, `hit@K`, `mmr@K` for each K (means
        over users with at least one test item), `n_eval_users`, `n_users_without_test`.
    """
    n_test = test.user_degrees()
    users = np.flatnonzero(n_test > 0)
    result: dict[str, float] = {"n_eval_users": float(len(users)),
                                "n_users_without_test": float(test.n_users - len(users))}
    if len(users) == 0:
        return result
    kmax = max(ks)
    top, _ = topk_items(score_fn, users, kmax, exclude=train, chunk_size=chunk_size)
    hits = test.contains(users[:, None], np.maximum(top, 0)) & (top >= 0)
    n_rel = n_test[users]
    counts = train.item_counts()
    for k in ks:
        for name, fn in RANKING_METRICS.items():
            result[f"{name}@{k}"] = float(fn(hits, n_rel, k).mean())
        result[f"mmr@{k}"] = float(np.mean(median_rank_popularity(top, counts, k)))
    return result


def evaluate_folds(results: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean and sample standard deviation (ddof=1; 0 for one fold) of each metric over folds."""
    out: dict[str, float] = {}
    for key in results[0]:
        values = np.array([r[key] for r in results], np.float64)
        out[key] = float(values.mean())
        out[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return out
