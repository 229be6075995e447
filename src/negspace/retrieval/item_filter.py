"""An item-item graph filter blended into a vector model's scores (`--item-filter W`).

The filter is GF-CF's linear term (Shen et al., CIKM 2021): a user's binary history row r scores
every item by r R~^T R~, R~ = D_u^-1/2 R D_i^-1/2 the degree-normalised training matrix, i.e. by
the items two hops away over the user-item graph. It is full-rank, so no d-dimensional vectors
hold it; on data with long sparse histories it ranks what low-rank vectors miss (gowalla-lightgcn,
the default's validated model: validation Recall@20 0.2240 alone, 0.2293 blended at W 0.1;
on ML-1M, Last.fm and ML-100k the blend scored level or lower: docs/results.md).

The blend is (1 - W) z(model) + W z(filter), z standardising each user's scores over the
catalogue, so W does not depend on either score's scale. Rankings read whole score rows, so the
blend ranks exactly; a faiss index over the vectors cannot answer for it.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch

from negspace.data.interactions import Interactions
from negspace.models.spectral import normalised_matrix

# Up to this many items the filter is one dense [n_items, n_items] float32 matrix (400 MB at
# 10,000; a history row times it is a matrix product); past it, two sparse products per call.
DENSE_MAX_ITEMS = 10_000
Z_EPS = 1e-12  # a constant score row (an empty history) standardises to zeros, not NaN


class ItemFilter:
    """Scores of histories by the linear graph filter of one training graph.

    Args:
        graph: the training interactions whose degree-normalised matrix R~ defines the filter.
    """

    def __init__(self, graph: Interactions) -> None:
        _, normalised, _ = normalised_matrix(graph.matrix)
        self.n_items = graph.n_items
        self.normalised = normalised.astype(np.float32).tocsr()
        self.normalised_t = self.normalised.T.tocsr()
        self.dense: torch.Tensor | None = None
        if self.n_items <= DENSE_MAX_ITEMS:
            self.dense = torch.from_numpy((self.normalised_t @ self.normalised).toarray())

    def scores(self, histories: sp.csr_matrix) -> torch.Tensor:
        """r R~^T R~ for each binary history row.

        Args:
            histories: [n, n_items] CSR rows (their values are read as 0 / 1).

        Returns:
            [n, n_items] float32 scores.
        """
        rows = sp.csr_matrix((np.ones(histories.nnz, np.float32), histories.indices,
                              histories.indptr), shape=histories.shape)
        if self.dense is not None:
            return torch.from_numpy(rows @ self.dense.numpy())
        return torch.from_numpy(((rows @ self.normalised_t) @ self.normalised).toarray())


def standardised(scores: torch.Tensor) -> torch.Tensor:
    """Each row minus its mean, over its standard deviation (float32)."""
    scores = scores.float()
    mean = scores.mean(dim=1, keepdim=True)
    std = scores.std(dim=1, keepdim=True)
    return (scores - mean) / (std + Z_EPS)


def blend(model_scores: torch.Tensor, filter_scores: torch.Tensor, weight: float) -> torch.Tensor:
    """(1 - weight) z(model_scores) + weight z(filter_scores), on model_scores' device."""
    filtered = standardised(filter_scores.to(model_scores.device))
    return standardised(model_scores).mul_(1.0 - weight).add_(filtered, alpha=weight)


def blended_scorer(score_fn: Callable[[torch.Tensor], torch.Tensor], item_filter: ItemFilter,
                   histories: sp.csr_matrix, weight: float
                   ) -> Callable[[torch.Tensor], torch.Tensor]:
    """A ScoreFn (`retrieval.topk`) ranking by the blend.

    Args:
        score_fn: positions -> [n, n_items] model scores.
        item_filter: the filter.
        histories: CSR rows, one per position score_fn takes: each user's history.
        weight: W in [0, 1]; 0 returns score_fn itself.

    Returns:
        positions -> [n, n_items] blended scores.
    """
    if weight == 0:
        return score_fn

    def scores(positions: torch.Tensor) -> torch.Tensor:
        rows = histories[positions.cpu().numpy()]
        return blend(score_fn(positions), item_filter.scores(rows), weight)
    return scores
