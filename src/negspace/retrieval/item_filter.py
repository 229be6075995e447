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
from negspace.models.spectral import normalised_matrix, torch_csr

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
        normalised = normalised.astype(np.float32).tocsr()
        self.n_items = graph.n_items
        self.normalised_t = normalised.T.tocsr()
        self.dense: torch.Tensor | None = None
        self._transposed: torch.Tensor | None = None  # R~^T as a torch CSR tensor, on first use
        if self.n_items <= DENSE_MAX_ITEMS:
            self.dense = torch.from_numpy((self.normalised_t @ normalised).toarray())

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
        # the users one hop away as a dense [n, n_users] block, then one sparse-dense product:
        # a sparse-sparse second product built a [n, n_items] sparse result of nearly every
        # cell (gowalla-lightgcn: 1.4 GB more peak memory than its dense scores)
        hops = torch.from_numpy((rows @ self.normalised_t).toarray())
        if self._transposed is None:
            self._transposed = torch_csr(self.normalised_t)
        return torch.sparse.mm(self._transposed, hops.T.contiguous()).T.contiguous()


def row_stats(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's mean and standard deviation (plus Z_EPS), [n, 1] each."""
    return scores.mean(dim=1, keepdim=True), scores.std(dim=1, keepdim=True).add_(Z_EPS)


def standardised(scores: torch.Tensor) -> torch.Tensor:
    """Each row minus its mean, over its standard deviation (a new float32 tensor)."""
    scores = scores.float()
    mean, std = row_stats(scores)
    return (scores - mean).div_(std)


def standardise_(scores: torch.Tensor) -> torch.Tensor:
    """`standardised`, written into `scores` (float32) itself."""
    mean, std = row_stats(scores)
    return scores.sub_(mean).div_(std)


def mix_(model_z: torch.Tensor, filter_z: torch.Tensor, weight: float,
         out: torch.Tensor | None = None) -> torch.Tensor:
    """(1 - weight) model_z + weight filter_z, into `out` (default: model_z itself). The one
    arithmetic of every blend, so the weight chosen on validation ranks as it was measured."""
    if out is None:
        out = model_z.mul_(1.0 - weight)
    else:
        torch.mul(model_z, 1.0 - weight, out=out)
    return out.add_(filter_z, alpha=weight)


def blend(model_scores: torch.Tensor, filter_scores: torch.Tensor, weight: float) -> torch.Tensor:
    """(1 - weight) z(model_scores) + weight z(filter_scores), on model_scores' device; reads
    model_scores, writes into filter_scores (the caller's own) and returns the blend."""
    filtered = standardise_(filter_scores.to(model_scores.device, torch.float32))
    return mix_(standardised(model_scores), filtered, weight)


def blended_scorer(score_fn: Callable[[torch.Tensor], torch.Tensor], item_filter: ItemFilter,
                   histories: sp.csr_matrix, weight: float
                   ) -> Callable[[torch.Tensor], torch.Tensor]:
    """A ScoreFn (`retrieval.topk`) ranking by the blend.

    Args:
        score_fn: positions -> [n, n_items] model scores.
        item_filter: the filter.
        histories: CSR rows, one per position score_fn takes: each user's history.
        weight: W in [0, 1); 0 returns score_fn itself.

    Returns:
        positions -> [n, n_items] blended scores (a new tensor each call).
    """
    if weight == 0:
        return score_fn

    def scores(positions: torch.Tensor) -> torch.Tensor:
        rows = histories[positions.cpu().numpy()]
        return blend(score_fn(positions), item_filter.scores(rows), weight)
    return scores
