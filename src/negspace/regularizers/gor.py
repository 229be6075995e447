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
    if neg_vectors.stride(0) == 0:  # one [N, d] set shared by every row (an expanded view)
        dots = pos_vectors @ neg_vectors[0].T
    else:  # a product and a sum: 3.5x faster than einsum's batched [1, d] x [d, N] products
        dots = (pos_vectors.unsqueeze(1) * neg_vectors).sum(-1)
    m1 = dots.mean()
    m2 = dots.pow(2).mean()
    return m1.pow(2) + torch.relu(m2 - 1.0 / pos_vectors.shape[-1])
