"""The Multi-Margin (Cosine) Loss (MML / MMCL, Ozsoy 2024) on cosine scores."""

from __future__ import annotations

from typing import Sequence

import torch

from negspace.losses.cosine_contrastive import _mean


def multi_margin(pos_scores: torch.Tensor, neg_scores: torch.Tensor,
                 margins: Sequence[float] = (0.6, 0.7, 0.8, 0.9),
                 margin_weights: Sequence[float] = (0.05, 0.15, 0.2, 0.6),
                 positive_weight: float = 1.0, negative_weight: float = 1.0,
                 neg_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-row terms a_p [1 - y_ui]_+ + a_n * mean_j sum_k lambda_k [y_uj - m_k]_+.

    Per negative this is a convex piecewise-linear hinge whose slope grows by lambda_k each time
    the cosine crosses m_k, so semi-hard negatives still get a (small) gradient; with one margin
    and weight 1 it is CCL.

    Args:
        pos_scores: [B] cosines of the positives.
        neg_scores: [B, N] cosines of the negatives.
        margins: m_1..m_K, each in [-1, 1].
        margin_weights: lambda_1..lambda_K (the paper's sum to 1), same length as margins.
        positive_weight: a_p.
        negative_weight: a_n, multiplies the mean over negatives.
        neg_mask: optional [B, N] bool, False where a negative must be ignored.

    Returns:
        [B] loss terms (the reference code averages them over the batch).
    """
    if len(margins) != len(margin_weights) or not len(margins):
        raise ValueError(f"need as many margin weights as margins, got {len(margin_weights)} "
                         f"and {len(margins)}")
    # Accumulating one margin at a time keeps memory at one [B, N] buffer instead of [B, K, N].
    per_neg = torch.zeros_like(neg_scores)
    for m, lam in zip(margins, margin_weights):
        per_neg = per_neg + lam * torch.relu(neg_scores - m)
    return positive_weight * torch.relu(1.0 - pos_scores) + negative_weight * _mean(per_neg, neg_mask)
