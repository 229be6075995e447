"""Metrics computed the slow, plain way from their definitions (docs/guide.md, "Metrics"), to
check the evaluator's vectorised numbers: one user at a time, Python sorting, pairwise Gini."""

from __future__ import annotations

import math

import numpy as np


def scores_of(user_vectors, item_vectors, measure: str) -> np.ndarray:
    """[n_users, n_items] float64 scores, higher is better."""
    u = np.asarray(user_vectors, np.float64)
    v = np.asarray(item_vectors, np.float64)
    if measure == "l2":
        return -((u[:, None, :] - v[None, :, :]) ** 2).sum(-1)
    if measure == "cosine":
        u = u / np.linalg.norm(u, axis=1, keepdims=True)
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
    return u @ v.T


def reference_metrics(scores: np.ndarray, train: dict[int, set[int]], test: dict[int, set[int]],
                      k: int) -> dict[str, float]:
    """map, ndcg, recall, hit, mmr, avgpop, longtail, coverage and gini at k.

    Args:
        scores: [n_users, n_items] scores.
        train: user -> training items (masked from the ranking; their counts are the popularity).
        test: user -> test items; users with none are left out.
        k: cut-off.
    """
    n_items = scores.shape[1]
    popularity = [0] * n_items
    for items in train.values():
        for i in items:
            popularity[i] += 1
    # head: the most popular items (ties by index) while fewer than 20% of interactions lie above
    total, above, head = sum(popularity), 0, set()
    for i in sorted(range(n_items), key=lambda i: (-popularity[i], i)):
        if above < 0.2 * total:
            head.add(i)
        above += popularity[i]
    per_user: dict[str, list[float]] = {m: [] for m in
                                        ("map", "ndcg", "recall", "hit", "mmr", "avgpop",
                                         "longtail")}
    shown = [0] * n_items
    for user, relevant in test.items():
        if not relevant:
            continue
        ranked = sorted((i for i in range(n_items) if i not in train.get(user, set())),
                        key=lambda i: -scores[user, i])[:k]
        gains = [1.0 if i in relevant else 0.0 for i in ranked]
        dcg = sum(g / math.log2(r + 2) for r, g in enumerate(gains))
        ideal = sum(1 / math.log2(r + 2) for r in range(min(len(relevant), k)))
        per_user["ndcg"].append(dcg / ideal)
        # AP@k: precision at the rank of each hit in the top k, summed, / min(|relevant|, k)
        found, precisions = 0, 0.0
        for rank, i in enumerate(ranked, 1):
            if i in relevant:
                found += 1
                precisions += found / rank
        per_user["map"].append(precisions / min(len(relevant), k))
        per_user["recall"].append(sum(gains) / len(relevant))
        per_user["hit"].append(float(any(gains)))
        pops = [popularity[i] for i in ranked]
        per_user["mmr"].append(float(np.median(pops)))
        per_user["avgpop"].append(sum(pops) / len(pops))
        per_user["longtail"].append(sum(i not in head for i in ranked) / len(ranked))
        for i in ranked:
            shown[i] += 1
    out = {f"{m}@{k}": float(np.mean(values)) for m, values in per_user.items()}
    out[f"coverage@{k}"] = sum(s > 0 for s in shown) / n_items
    mean = sum(shown) / n_items
    out[f"gini@{k}"] = (sum(abs(a - b) for a in shown for b in shown)
                        / (2 * n_items * n_items * mean))
    return out


def rows_of(matrix) -> dict[int, set[int]]:
    """user row -> set of item columns of a CSR matrix."""
    return {u: set(matrix.indices[matrix.indptr[u]:matrix.indptr[u + 1]].tolist())
            for u in range(matrix.shape[0])}
