"""Triplet hinge over the hardest of N negatives (CML), with the optional WARP-style rank weight."""

from __future__ import annotations


import torch


def triplet_hinge(d2_pos: torch.Tensor, d2_neg: torch.Tensor, margin: float = 1.0,
                  rank_weight: bool = False, n_items: int | None = None) -> torch.Tensor:
    """Per-row terms w_ij * [D^2(u_i, v_j) - min_k D^2(u_i, v_k) + margin]_+.

    Args:
        d2_pos: [B] squared distances user-positive.
        d2_neg: [B, N] squared distances user-negatives.
        margin: alpha.
        rank_weight: use w_ij = log(1 + floor(M * impostors / N)), impostors = negatives with
            D^2(u, k) < D^2(u, j) + margin (the CML paper's WARP-style weight); else w_ij = 1.
        n_items: M, the catalogue size (needed with rank_weight).

    Returns:
        [B] loss terms (reduce them yourself: the paper sums over the batch).
    """
    hinge = torch.relu(d2_pos - d2_neg.min(dim=1).values + margin)
    if not rank_weight:
        return hinge
    if n_items is None:
        raise ValueError("rank_weight needs n_items")
    with torch.no_grad():
        impostors = (d2_neg < (d2_pos + margin).unsqueeze(1)).sum(dim=1).float()
        w = torch.log1p(torch.floor(n_items * impostors / d2_neg.shape[1]))
    return w * hinge


