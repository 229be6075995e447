"""Full-ranking evaluation: every item scored, training items masked, metrics at several K."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from negspace.data.interactions import Interactions
from negspace.evaluation.beyond import (average_popularity, coverage, exposure, gini,
                                        long_tail_mask, long_tail_share)
from negspace.evaluation.metrics import RANKING_METRICS, median_rank_popularity
from negspace.retrieval.topk import ScoreFn, topk_items


def evaluate(score_fn: ScoreFn, train: Interactions, test: Interactions,
             ks: Sequence[int] = (20, 50), chunk_size: int | None = None) -> dict[str, float]:
    """Metrics of a scorer on held-out interactions, ranking all items (the
    full-ranking protocol of docs/guide.md, "Metrics").

    Each user with at least one test item gets the top max(ks) items among those not in their
    training rows; hits are looked up in the test CSR with one vectorised search.

    Args:
        score_fn: LongTensor of user indices -> [len, n_items] scores, higher is better.
        train: training interactions: masked from the ranking, and the item popularity MMR uses.
        test: held-out interactions, same user and item index space as `train`.
        ks: cut-offs (each >= 1).
        chunk_size: users ranked at a time (memory is about chunk_size x n_items floats);
            None: `auto_chunk_size(n_items)`.

    Returns:
        Flat dict: `map@K`, `ndcg@K`, `recall@K`, `precision@K`, `hit@K`, `mmr@K` for each K,
        each the mean over evaluated users (NaN when there are none); the beyond-accuracy
        `avgpop@K`, `longtail@K` (user means), `coverage@K` and `gini@K` (over the evaluated
        users' lists; see evaluation/beyond.py); `n_eval_users` (users with at least one test
        item) and `n_users_without_test` (users skipped), as floats.
    """
    users, top = rank_test_users(score_fn, train, test, ks, chunk_size)
    return metrics_from_top(top, users, train, test, ks)


def rank_test_users(score_fn: ScoreFn, train: Interactions, test: Interactions,
                    ks: Sequence[int], chunk_size: int | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(the users with at least one test item, in increasing order; their top max(ks) items
    among those not in their training rows, -1 padding): the ranking `evaluate` scores."""
    if train.matrix.shape != test.matrix.shape:
        raise ValueError(f"train {train.matrix.shape} and test {test.matrix.shape} differ in shape")
    if len(ks) == 0 or min(ks) < 1:
        raise ValueError(f"ks must be positive cut-offs, got {tuple(ks)}")
    users = np.flatnonzero(test.user_degrees() > 0)
    top = np.empty((0, max(ks)), np.int64)
    if len(users):
        top, _ = topk_items(score_fn, users, max(ks), exclude=train,
                            chunk_size=chunk_size or auto_chunk_size(train.n_items))
    return users, top


def per_user_metrics(top: np.ndarray, users: np.ndarray, test: Interactions,
                     ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Each ranking metric of each user (`evaluate` reports their means; a paired test compares
    them user by user: evaluation/significance.py).

    Args:
        top, users: `rank_test_users`' ranking.
        test: the held-out interactions.
        ks: cut-offs.

    Returns:
        `map@K`, `ndcg@K`, `recall@K`, `precision@K`, `hit@K` -> [len(users)] float64.
    """
    # padding (-1) is never a hit; clamp it to a valid index only for the lookup
    hits = test.contains(users[:, None], np.maximum(top, 0)) & (top >= 0)
    n_rel = test.user_degrees()[users]
    return {f"{name}@{k}": fn(hits, n_rel, k) for k in ks for name, fn in RANKING_METRICS.items()}


def metrics_from_top(top: np.ndarray, users: np.ndarray, train: Interactions, test: Interactions,
                     ks: Sequence[int]) -> dict[str, float]:
    """The metrics of `evaluate` from the ranked lists (several processes can rank parts of the
    users and gather the lists; distributed/process_group.py).

    Args:
        top: [len(users), max(ks)] ranked items, -1 padding.
        users: the users with at least one test item, in increasing order.
        train, test: as in `evaluate`.
        ks: cut-offs.
    """
    names = [*RANKING_METRICS, "mmr", *BEYOND_METRICS]
    result = {f"{name}@{k}": float("nan") for k in ks for name in names}
    if len(users):
        result.update({key: float(values.mean())
                       for key, values in per_user_metrics(top, users, test, ks).items()})
        counts = train.item_counts()
        tail = long_tail_mask(counts)
        for k in ks:
            mmr = median_rank_popularity(top, counts, k)
            # a user with every item masked has no median (possible only if test overlaps train)
            if not np.isnan(mmr).all():
                result[f"mmr@{k}"] = float(np.nanmean(mmr))
            result.update(_beyond_accuracy(top, counts, tail, k))
    result["n_eval_users"] = float(len(users))
    result["n_users_without_test"] = float(test.n_users - len(users))
    return result


BEYOND_METRICS = ("avgpop", "longtail", "coverage", "gini")

# Scores of one chunk of users: 2^25 floats (128 MB). 4096 users x 200k items would be 3.3 GB.
_CHUNK_FLOATS = 1 << 25


def auto_chunk_size(n_items: int) -> int:
    """Users ranked at a time: 4096 (as before) unless the [chunk, n_items] scores would pass
    128 MB; large catalogues take smaller chunks, never fewer than 64 users."""
    return int(min(4096, max(64, _CHUNK_FLOATS // max(n_items, 1))))


def _beyond_accuracy(top: np.ndarray, counts: np.ndarray, tail: np.ndarray, k: int
                     ) -> dict[str, float]:
    """Popularity-bias and exposure metrics at k from the top-k lists already ranked."""
    shown = exposure(top, len(counts), k)
    out = {f"coverage@{k}": coverage(shown), f"gini@{k}": gini(shown)}
    for name, per_user in (("avgpop", average_popularity(top, counts, k)),
                           ("longtail", long_tail_share(top, tail, k))):
        # NaN only for users with every item masked, as for MMR
        out[f"{name}@{k}"] = (float(np.nanmean(per_user)) if not np.isnan(per_user).all()
                              else float("nan"))
    return out


def evaluate_folds(results: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean and spread of each metric over cross-validation folds.

    Args:
        results: one `evaluate` dict per fold, all with the same keys.

    Returns:
        For every key `m`: `m` (mean over folds) and `m_std` (sample standard deviation, ddof=1,
        when there is more than one fold; 0.0 for a single fold).
    """
    if len(results) == 0:
        raise ValueError("evaluate_folds needs at least one fold")
    keys = list(results[0])
    if any(set(r) != set(keys) for r in results):
        raise ValueError("folds report different metrics")
    out: dict[str, float] = {}
    for key in keys:
        values = np.array([r[key] for r in results], np.float64)
        out[key] = float(values.mean())
        out[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return out
