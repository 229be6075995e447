"""Bayesian Personalised Ranking."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bpr(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """Per-row terms mean_k -log sigmoid(s_ui - s_uk).

    Args:
        pos_scores: [B] scores of the positives.
        neg_scores: [B, N] scores of the negatives.

    Returns:
        [B] loss terms.
    """
    return -F.logsigmoid(pos_scores.unsqueeze(1) - neg_scores).mean(dim=1)
