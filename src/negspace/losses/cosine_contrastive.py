"""SimpleX's Cosine Contrastive Loss (CCL, Mao et al. 2021) on cosine scores."""

from __future__ import annotations

import torch


def cosine_contrastive(pos_scores: torch.Tensor, neg_scores: torch.Tensor, margin: float = 0.9,
                       negative_weight: float = 1.0,
                       neg_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-row terms [1 - y_ui]_+ + w * mean_j [y_uj - m]_+.

    Args:
        pos_scores: [B] cosines of the positives.
        neg_scores: [B, N] cosines of the negatives.
        margin: m in [-1, 1]; negatives whose cosine is below it contribute nothing.
        negative_weight: w, multiplies the mean over negatives.
        neg_mask: optional [B, N] bool, False where a negative must be ignored (a shared negative
            that is one of the row user's positives); the mean runs over the kept ones.

    Returns:
        [B] loss terms (SimpleX averages them over the batch).
    """
    hinge = torch.relu(neg_scores - margin)
    return torch.relu(1.0 - pos_scores) + negative_weight * _mean(hinge, neg_mask)


def _mean(terms: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over dim 1, over the unmasked entries only (a row with none gives 0)."""
    if mask is None:
        return terms.mean(dim=1)
    kept = mask.sum(dim=1).clamp(min=1)
    return (terms * mask).sum(dim=1) / kept
