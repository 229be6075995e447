"""The full-ranking evaluator against a brute-force reference, by hand, and its bookkeeping."""

import math
import statistics

import numpy as np
import pytest
import torch

from negspace.data.interactions import Interactions
from negspace.evaluation import evaluate, evaluate_folds
from negspace.evaluation.evaluator import per_user_metrics, rank_test_users

NAMES = ("map", "ndcg", "recall", "precision", "hit", "mmr", "avgpop", "longtail", "coverage", "gini")


def _inter(mask: np.ndarray) -> Interactions:
    return Interactions.from_indices(*np.nonzero(mask), np.arange(mask.shape[0]),
                                     np.arange(mask.shape[1]))


def _brute_force(scores: np.ndarray, train: np.ndarray, test: np.ndarray, k: int) -> dict:
    """Per-user metrics written plainly from their definitions, averaged over users with test items."""
    per_user, shown = _brute_force_per_user(scores, train, test, k)
    out = {name: float(np.mean(v)) for name, v in per_user.items() if v}
    out["coverage"] = sum(c > 0 for c in shown) / len(shown)
    x, n = sorted(shown), len(shown)  # Gini as the mean absolute difference over 2 * mean
    out["gini"] = sum(abs(a - b) for a in x for b in x) / (2 * n * n * np.mean(x))
    return out


def _brute_force_per_user(scores: np.ndarray, train: np.ndarray, test: np.ndarray, k: int
                          ) -> tuple[dict[str, list[float]], list[int]]:
    """(each metric of each user with test items, in user order; how often each item is shown)."""
    counts = train.sum(axis=0)
    per_user: dict[str, list[float]] = {name: [] for name in NAMES}
    head, seen = set(), 0  # most popular items until they hold 20% of the interactions
    for item in sorted(range(len(counts)), key=lambda i: (-counts[i], i)):
        if seen >= 0.2 * counts.sum():
            break
        head.add(item)
        seen += counts[item]
    shown = [0] * len(counts)
    for u in range(scores.shape[0]):
        relevant = set(np.flatnonzero(test[u]).tolist())
        if not relevant:
            continue
        ranked = [i for i in np.argsort(-scores[u]) if not train[u, i]][:k]
        found, ap, dcg = 0, 0.0, 0.0
        for rank, item in enumerate(ranked, start=1):
            if item in relevant:
                found += 1
                ap += found / rank
                dcg += 1.0 / math.log2(rank + 1)
        ideal = sum(1.0 / math.log2(r + 1) for r in range(1, min(len(relevant), k) + 1))
        per_user["map"].append(ap / min(len(relevant), k))
        per_user["ndcg"].append(dcg / ideal)
        per_user["recall"].append(found / len(relevant))
        per_user["precision"].append(found / k)
        per_user["hit"].append(float(found > 0))
        per_user["mmr"].append(float(statistics.median(counts[i] for i in ranked)))
        per_user["avgpop"].append(float(np.mean([counts[i] for i in ranked])))
        per_user["longtail"].append(sum(i not in head for i in ranked) / len(ranked))
        for i in ranked:
            shown[i] += 1
    return per_user, shown


def _random_case(seed: int, n_users: int = 40, n_items: int = 90):
    rng = np.random.default_rng(seed)
    train = rng.random((n_users, n_items)) < 0.15
    test = (rng.random((n_users, n_items)) < rng.uniform(0.01, 0.4, (n_users, 1))) & ~train
    test[:3] = False  # users without test items
    test[3, :] = ~train[3]  # many more test items than any K
    test[4, :] = False
    test[4, 7] = True  # a single test item
    train[5, :] = True
    train[5, :3] = False  # only 3 admissible items: fewer than K, the tail is padding
    test[5, :3] = [True, False, True]
    scores = rng.standard_normal((n_users, n_items)).astype(np.float32)  # continuous: no ties
    return scores, train, test


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("chunk", [7, 4096])
def test_matches_brute_force(seed, chunk):
    scores, train, test = _random_case(seed)
    n_test = test.sum(axis=1)
    assert ((n_test > 0) & (n_test < 5)).any() and (n_test > 50).any()
    got = evaluate(lambda u: torch.from_numpy(scores[u.numpy()]), _inter(train), _inter(test),
                   ks=(5, 20, 50), chunk_size=chunk)
    assert got["n_users_without_test"] == (n_test == 0).sum() >= 3
    assert got["n_eval_users"] == (n_test > 0).sum()
    for k in (5, 20, 50):
        want = _brute_force(scores, train, test, k)
        for name in NAMES:
            assert got[f"{name}@{k}"] == pytest.approx(want[name], rel=1e-9, abs=1e-12), (name, k)


@pytest.mark.parametrize("seed", [0, 3])
def test_per_user_metrics_match_brute_force_user_by_user(seed):
    scores, train, test = _random_case(seed)
    users, top = rank_test_users(lambda u: torch.from_numpy(scores[u.numpy()]), _inter(train),
                                 _inter(test), ks=(5, 20))
    np.testing.assert_array_equal(users, np.flatnonzero(test.sum(axis=1) > 0))
    got = per_user_metrics(top, users, _inter(test), ks=(5, 20))
    for k in (5, 20):
        want, _ = _brute_force_per_user(scores, train, test, k)
        for name in ("map", "ndcg", "recall", "precision", "hit"):
            np.testing.assert_allclose(got[f"{name}@{k}"], want[name], rtol=1e-9, atol=1e-12)


def test_hand_computed():
    scores = torch.tensor([[.9, .8, .7, .6, .5],
                           [.0, .0, .0, .0, .0],
                           [.1, .2, .3, .4, .5]])
    train = _inter(np.array([[1, 0, 0, 0, 0], [0, 0, 0, 1, 1], [0, 0, 0, 0, 0]], bool))
    test = _inter(np.array([[0, 0, 1, 0, 1], [0, 0, 0, 0, 0], [0, 0, 0, 0, 1]], bool))
    got = evaluate(lambda u: scores[u], train, test, ks=(2,))
    # user 0: item 0 masked, top-2 = [1, 2], hits [0, 1], 2 test items
    #   AP = (1/2) / 2 = 0.25, NDCG = (1/log2 3) / (1 + 1/log2 3) = 0.3868528, recall 1/2, P 1/2
    # user 1: no test item, skipped
    # user 2: top-2 = [4, 3], hits [1, 0], 1 test item: AP 1, NDCG 1, recall 1, P 1/2
    # item training counts [1, 0, 0, 1, 1]: medians u0 median(0, 0) = 0, u2 median(1, 1) = 1
    assert got["map@2"] == pytest.approx((0.25 + 1) / 2)            # 0.625
    assert got["ndcg@2"] == pytest.approx((0.3868528 + 1) / 2, abs=1e-7)  # 0.6934264
    assert got["recall@2"] == pytest.approx(0.75)
    assert got["precision@2"] == pytest.approx(0.5)
    assert got["hit@2"] == 1.0
    assert got["mmr@2"] == 0.5
    # lists [1, 2] and [4, 3]: mean counts 0 and 1; head = item 0 (the first 20% of the 3
    # interactions), so every shown item is long-tail; 4 of 5 items shown, exposure [0,1,1,1,1]
    assert got["avgpop@2"] == 0.5 and got["longtail@2"] == 1.0
    assert got["coverage@2"] == pytest.approx(0.8) and got["gini@2"] == pytest.approx(0.2)
    assert got["n_eval_users"] == 2 and got["n_users_without_test"] == 1
    assert set(got) == {f"{n}@2" for n in NAMES} | {"n_eval_users", "n_users_without_test"}


def test_test_items_also_in_train_are_never_hits():
    scores = torch.tensor([[3.0, 2.0, 1.0]])
    both = _inter(np.array([[1, 0, 0]], bool))
    got = evaluate(lambda u: scores[u], both, both, ks=(1,))
    assert got["hit@1"] == 0.0 and got["recall@1"] == 0.0


def test_no_user_with_test_items():
    empty = Interactions.from_indices(np.array([], np.int64), np.array([], np.int64),
                                      np.arange(3), np.arange(4))
    got = evaluate(lambda u: torch.zeros(len(u), 4), empty, empty, ks=(2,))
    assert got["n_eval_users"] == 0 and got["n_users_without_test"] == 3
    assert all(math.isnan(got[f"{n}@2"]) for n in NAMES)


def test_rejects_mismatched_shapes_and_bad_ks():
    a = _inter(np.eye(3, dtype=bool))
    b = _inter(np.eye(3, 4, dtype=bool))
    with pytest.raises(ValueError):
        evaluate(lambda u: torch.zeros(len(u), 3), a, b)
    with pytest.raises(ValueError):
        evaluate(lambda u: torch.zeros(len(u), 3), a, a, ks=(0,))


def test_evaluate_folds_mean_and_sample_std():
    out = evaluate_folds([{"map@50": 0.1, "n_eval_users": 3.0},
                          {"map@50": 0.3, "n_eval_users": 5.0}])
    assert out["map@50"] == pytest.approx(0.2)
    assert out["map@50_std"] == pytest.approx(math.sqrt(0.02))  # ((0.1^2 + 0.1^2) / (2 - 1))^0.5
    assert out["n_eval_users"] == 4.0
    single = evaluate_folds([{"map@50": 0.1}])
    assert single == {"map@50": 0.1, "map@50_std": 0.0}
    with pytest.raises(ValueError):
        evaluate_folds([])
    with pytest.raises(ValueError):
        evaluate_folds([{"map@50": 0.1}, {"ndcg@50": 0.1}])
