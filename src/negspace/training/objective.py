"""Assembles a batch loss from the model's vectors, a loss and the regularisers."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from negspace.losses import bpr, triplet_hinge
from negspace.models.base import EmbeddingModel
from negspace.regularizers import covariance, embedding_l2, gor


@dataclass
class Objective:
    """Args:
        loss: "triplet" (hardest-of-N hinge on -score, summed over the batch as in the paper)
            or "bpr" (mean over the batch).
        margin: triplet margin.
        rank_weight: WARP-style weight on the triplet terms.
        gor_weight: lambda_g of the spread-out regulariser (0 disables it).
        cov_weight: weight of CML's covariance regulariser.
        l2_weight: L2 penalty on the looked-up vectors.
    """

    loss: str = "triplet"
    margin: float = 1.0
    rank_weight: bool = False
    gor_weight: float = 0.0
    cov_weight: float = 0.0
    l2_weight: float = 0.0

    def __call__(self, model: EmbeddingModel, users: torch.Tensor, items: torch.Tensor,
                 negatives: torch.Tensor) -> torch.Tensor:
        """Args:
            users, items: [B] indices of the positive pairs.
            negatives: [B, N] negative item indices.

        Returns:
            Scalar loss.
        """
        u = model.user_vectors(users)
        p = model.item_vectors(items)
        n = model.item_vectors(negatives.reshape(-1)).reshape(*negatives.shape, -1)
        pos = model.score(u, p)
        neg = model.score(u.unsqueeze(1), n)
        if self.loss == "triplet":
            # For l2 models -score is D^2; for dot/cosine models it is the negated similarity.
            total = triplet_hinge(-pos, -neg, self.margin, self.rank_weight, model.n_items).sum()
        else:
            total = bpr(pos, neg).mean()
        if self.gor_weight:
            total = total + self.gor_weight * gor(p, n)
        if self.cov_weight:
            total = total + self.cov_weight * covariance(torch.cat([u, p]))
        if self.l2_weight:
            total = total + self.l2_weight * embedding_l2(u, p, n.reshape(-1, n.shape[-1]))
        return total
