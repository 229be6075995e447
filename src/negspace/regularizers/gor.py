"""Global Orthogonal Regularisation (spread-out), Zhang et al. 2017, as used by Tran et al."""

from __future__ import annotations

import torch


def gor(pos_vectors: torch.Tensor, neg_vectors: torch.Tensor) -> torch.Tensor:
    """L_GOR = (mean v_j.v_k)^2 + [mean (v_j.v_k)^2 - 1/d]_+ over the Q = B*N (positive, negative) pairs.

    Args:
        pos_vectors: [B, d] positive item vectors.
        neg_vectors: [B, N, d] negative item vectors of each row.

    Returns:
        Scalar.
    """
    dots = torch.einsum("bd,bnd->bn", pos_vectors, neg_vectors)
    m1 = dots.mean()
    m2 = dots.pow(2).mean()
    return m1.pow(2) + torch.relu(m2 - 1.0 / pos_vectors.shape[-1])
