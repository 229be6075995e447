"""Each metric against a plain per-user reference written from the metrics'
definitions (docs/guide.md, "Metrics"), and by hand."""

import math
import statistics

import numpy as np
import pytest

from negspace.evaluation.metrics import (average_precision, hit_rate, median_rank_popularity,
                                         ndcg, precision, recall)


def _reference(ranked_hits: list[bool], n_rel: int, k: int) -> dict[str, float]:
    """The definitions, one user, looping over the ranked items."""
    found, ap, dcg = 0, 0.0, 0.0
    for rank, hit in enumerate(ranked_hits[:k], start=1):
        if hit:
            found += 1
            ap += found / rank  # precision at this rank
            dcg += 1.0 / math.log2(rank + 1)
    idcg = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(n_rel, k) + 1))
    return {"map": ap / min(n_rel, k), "ndcg": dcg / idcg, "recall": found / n_rel,
            "precision": found / k, "hit": float(found > 0)}


FUNCS = {"map": average_precision, "ndcg": ndcg, "recall": recall, "precision": precision,
         "hit": hit_rate}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_reference_on_random_rankings(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items, width = 50, 60, 30
    hits = np.zeros((n_users, width), bool)
    n_rel = rng.integers(1, 45, n_users)  # both fewer and more test items than every k below
    for u in range(n_users):
        relevant = set(rng.choice(n_items, n_rel[u], replace=False).tolist())
        ranking = rng.permutation(n_items)[:width]
        hits[u] = [item in relevant for item in ranking]
    assert (n_rel < 5).any() and (n_rel > 30).any()
    for k in (1, 5, 10, 30, 40):  # 40 > width: the missing ranks are misses
        for name, fn in FUNCS.items():
            got = fn(hits, n_rel, k)
            want = [_reference(hits[u].tolist(), int(n_rel[u]), k)[name] for u in range(n_users)]
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=0, err_msg=f"{name}@{k}")
            np.testing.assert_allclose(fn(hits.astype(np.float32), n_rel, k), got, rtol=1e-12)


def test_hand_computed_at_5():
    hits = np.array([[1, 0, 1, 0, 0],   # user 0: hits at ranks 1 and 3, 3 test items
                     [0, 0, 0, 0, 0],   # user 1: no hit, 2 test items
                     [0, 1, 1, 1, 1]],  # user 2: hits at ranks 2..5, 10 test items
                    bool)
    n_rel = np.array([3, 2, 10])
    # AP: u0 (1/1 + 2/3) / min(3,5) = 5/9; u2 (1/2 + 2/3 + 3/4 + 4/5) / 5 = (163/60) / 5 = 163/300
    np.testing.assert_allclose(average_precision(hits, n_rel, 5), [5 / 9, 0.0, 163 / 300])
    # NDCG: u0 DCG 1 + 1/log2(4) = 1.5, IDCG 1 + 0.6309298 + 0.5 = 2.1309298 -> 0.7039180
    #       u2 DCG 0.6309298 + 0.5 + 0.4306766 + 0.3868528 = 1.9484592, IDCG 2.9484592 -> 0.6608398
    np.testing.assert_allclose(ndcg(hits, n_rel, 5), [0.7039180, 0.0, 0.6608398], atol=1e-7)
    np.testing.assert_allclose(recall(hits, n_rel, 5), [2 / 3, 0.0, 0.4])  # 2/3, 0/2, 4/10
    np.testing.assert_allclose(precision(hits, n_rel, 5), [0.4, 0.0, 0.8])  # 2/5, 0/5, 4/5
    np.testing.assert_array_equal(hit_rate(hits, n_rel, 5), [1.0, 0.0, 1.0])


def test_hand_computed_at_2():
    hits = np.array([[1, 0, 1, 0, 0], [0, 1, 1, 1, 1]], bool)
    n_rel = np.array([3, 10])
    # AP: u0 (1/1) / min(3,2) = 0.5; u1 (1/2) / 2 = 0.25
    np.testing.assert_allclose(average_precision(hits, n_rel, 2), [0.5, 0.25])
    # NDCG: u0 1 / (1 + 0.6309298) = 0.6131472; u1 0.6309298 / 1.6309298 = 0.3868528
    np.testing.assert_allclose(ndcg(hits, n_rel, 2), [0.6131472, 0.3868528], atol=1e-7)
    np.testing.assert_allclose(recall(hits, n_rel, 2), [1 / 3, 0.1])
    np.testing.assert_allclose(precision(hits, n_rel, 2), [0.5, 0.5])
    np.testing.assert_array_equal(hit_rate(hits, n_rel, 2), [1.0, 1.0])
    # at k = 1 only user 0 has a hit
    np.testing.assert_array_equal(hit_rate(hits, n_rel, 1), [1.0, 0.0])


def test_median_rank_popularity_by_hand_with_padding():
    counts = np.array([10, 1, 7, 3, 100])
    top = np.array([[0, 1, 2], [3, -1, -1], [4, 2, 0]])
    # k = 3: median(10, 1, 7) = 7; median(3) = 3 (padding left out); median(100, 7, 10) = 10
    np.testing.assert_array_equal(median_rank_popularity(top, counts, 3), [7.0, 3.0, 10.0])
    # k = 2: median(10, 1) = 5.5; 3; median(100, 7) = 53.5
    np.testing.assert_array_equal(median_rank_popularity(top, counts, 2), [5.5, 3.0, 53.5])
    # a user with no items at all has no median
    assert np.isnan(median_rank_popularity(np.array([[-1, -1]]), counts, 2)[0])


def test_median_rank_popularity_matches_reference():
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 1000, 80)
    top = np.array([rng.permutation(80)[:25] for _ in range(40)])
    top[5, 10:] = -1  # padding in one row
    for k in (1, 4, 25):
        want = [statistics.median(counts[i] for i in row[:k] if i >= 0) for row in top]
        np.testing.assert_array_equal(median_rank_popularity(top, counts, k), want)
