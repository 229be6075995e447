"""`--item-filter auto`: the blend weight of the item-item graph filter chosen on validation.

Each chunk of validation users is scored once by the model and once by the filter; every weight
of the grid then ranks the same two score matrices, so the grid costs one evaluation of each
plus a top-k per weight.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from negspace.data.interactions import Interactions
from negspace.evaluation.evaluator import auto_chunk_size, per_user_metrics
from negspace.retrieval.item_filter import ItemFilter, mix_, standardise_, standardised
from negspace.retrieval.topk import ScoreFn, topk_items

# The weights tried. On gowalla-lightgcn's validation split the default's model peaked at 0.1
# (Recall@20 0.2240 alone, 0.2273 / 0.2293 / 0.2283 / 0.2267 at 0.05 / 0.1 / 0.15 / 0.2),
# Amazon-Book's at 0.2; every set measured scored lower at 0.3 than at its best weight.
WEIGHTS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)


def choose_weight(score_fn: ScoreFn, item_filter: ItemFilter, train: Interactions,
                  validation: Interactions, metric: str,
                  weights: Sequence[float] = WEIGHTS) -> tuple[float, dict[float, float]]:
    """The weight whose blend scores highest on `metric` over the validation users.

    Args:
        score_fn: user indices -> [n, n_items] model scores.
        item_filter: the filter of the graph the model was trained on (`train`).
        train: the interactions trained on: each user's history, masked from the ranking.
        validation: held-out interactions in the same index space.
        metric: a ranking metric at a cut-off, e.g. "recall@20" or "ndcg@50".
        weights: the grid; ties go to the earlier (smaller) weight.

    Returns:
        (the chosen weight, {weight: the metric's mean over the validation users}).
    """
    k = int(metric.partition("@")[2])
    users = np.flatnonzero(validation.user_degrees() > 0)
    tops: dict[float, list[np.ndarray]] = {w: [] for w in weights}
    chunk = auto_chunk_size(train.n_items)
    for lo in range(0, len(users), chunk):
        rows = users[lo:lo + chunk]
        with torch.no_grad():
            model = score_fn(torch.from_numpy(rows))
            # each side standardised once; every weight mixes them into one reused buffer
            model_z = standardised(model)
            filter_z = standardise_(item_filter.scores(train.matrix[rows]).to(model.device))
            mixed = torch.empty_like(model_z)
            for w in weights:
                scores = model if w == 0 else mix_(model_z, filter_z, w, out=mixed)
                top, _ = topk_items(lambda _p, s=scores: s, rows, k, exclude=train,
                                    chunk_size=len(rows))
                tops[w].append(top)
    values = {}
    for w in weights:
        top = np.concatenate(tops[w]) if tops[w] else np.empty((0, k), np.int64)
        values[w] = float(np.mean(per_user_metrics(top, users, validation, (k,))[metric])) \
            if len(users) else float("nan")
    best = max(weights, key=lambda w: (values[w], -w))
    return best, values


__all__ = ["WEIGHTS", "choose_weight"]
