import math

import numpy as np
import pytest
import torch

from negspace.data.interactions import Interactions
from negspace.evaluation import evaluate, evaluate_folds
from negspace.evaluation.metrics import average_precision, hit_rate, ndcg, recall
from negspace.retrieval import topk_items


def _brute_force(scores: np.ndarray, train: np.ndarray, test: np.ndarray, k: int, counts: np.ndarray):
    """Per-user metrics written plainly from SPEC.md's definitions."""
    out = {"map": [], "ndcg": [], "recall": [], "hit": [], "mmr": []}
    for u in range(scores.shape[0]):
        relevant = set(np.flatnonzero(test[u]))
        if not relevant:
            continue
        ranked = [i for i in np.argsort(-scores[u], kind="stable") if not train[u, i]][:k]
        hits_so_far, ap, dcg = 0, 0.0, 0.0
        for rank, item in enumerate(ranked, start=1):
            if item in relevant:
                hits_so_far += 1
                ap += hits_so_far / rank
                dcg += 1.0 / math.log2(rank + 1)
        ideal = sum(1.0 / math.log2(r + 1) for r in range(1, min(len(relevant), k) + 1))
        out["map"].append(ap / min(len(relevant), k))
        out["ndcg"].append(dcg / ideal)
        out["recall"].append(hits_so_far / len(relevant))
        out["hit"].append(float(hits_so_far > 0))
        out["mmr"].append(float(np.median([counts[i] for i in ranked])))
    return {name: float(np.mean(v)) for name, v in out.items()}


def _random_case(seed: int, n_users: int = 30, n_items: int = 80):
    rng = np.random.default_rng(seed)
    train = rng.random((n_users, n_items)) < 0.15
    test = (rng.random((n_users, n_items)) < 0.12) & ~train
    test[0] = False  # a user without test items
    test[1, :] = ~train[1]  # more test items than K
    scores = rng.standard_normal((n_users, n_items)).astype(np.float32)
    ids = np.arange(n_users), np.arange(n_items)
    to_inter = lambda m: Interactions.from_indices(*np.nonzero(m), *ids)  # noqa: E731
    return scores, train, test, to_inter(train), to_inter(test)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("chunk", [7, 4096])
def test_metrics_match_brute_force(seed, chunk):
    scores, train, test, tr, te = _random_case(seed)
    score_fn = lambda users: torch.from_numpy(scores[users.numpy()])  # noqa: E731
    got = evaluate(score_fn, tr, te, ks=(5, 20, 50), chunk_size=chunk)
    assert got["n_users_without_test"] >= 1
    assert got["n_eval_users"] == (test.sum(1) > 0).sum()
    counts = train.sum(0)
    for k in (5, 20, 50):
        ref = _brute_force(scores, train, test, k, counts)
        for name in ("map", "ndcg", "recall", "hit", "mmr"):
            assert got[f"{name}@{k}"] == pytest.approx(ref[name], rel=1e-9, abs=1e-12), (name, k)


def test_hand_computed_example():
    # ranks 1..4 with hits at ranks 1 and 3; 3 relevant items; K = 4
    hits = np.array([[1, 0, 1, 0]], bool)
    n_rel = np.array([3])
    # AP = (1/1 + 2/3) / min(3, 4) = 0.5555...
    assert average_precision(hits, n_rel, 4)[0] == pytest.approx((1 + 2 / 3) / 3)
    # DCG = 1 + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3) + 1/2 = 2.1309...
    assert ndcg(hits, n_rel, 4)[0] == pytest.approx(1.5 / (1 + 1 / math.log2(3) + 0.5))
    assert recall(hits, n_rel, 4)[0] == pytest.approx(2 / 3)
    assert hit_rate(hits, n_rel, 2)[0] == 1.0
    # at K = 2: AP = 1 / min(3, 2) = 0.5, NDCG = 1 / (1 + 1/log2 3)
    assert average_precision(hits, n_rel, 2)[0] == pytest.approx(0.5)
    assert ndcg(hits, n_rel, 2)[0] == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_topk_masks_training_items_and_pads():
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0], [1.0, 2.0, 3.0, 4.0]])
    train = Interactions.from_indices(np.array([0, 0, 0, 1]), np.array([0, 1, 2, 3]),
                                      np.arange(2), np.arange(4))
    items, top_scores = topk_items(lambda u: scores[u], np.array([0, 1]), 3, exclude=train)
    np.testing.assert_array_equal(items, [[3, -1, -1], [2, 1, 0]])
    assert np.isneginf(top_scores[0, 1:]).all()
    items, _ = topk_items(lambda u: scores[u], np.array([1]), 2, exclude=None,
                          candidates=np.array([0, 1]))
    np.testing.assert_array_equal(items, [[1, 0]])


def test_evaluate_folds_mean_and_sample_std():
    out = evaluate_folds([{"map@50": 0.1}, {"map@50": 0.3}])
    assert out["map@50"] == pytest.approx(0.2)
    assert out["map@50_std"] == pytest.approx(np.std([0.1, 0.3], ddof=1))
