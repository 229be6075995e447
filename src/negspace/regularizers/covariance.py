"""CML's covariance regulariser: de-correlates the embedding dimensions."""

from __future__ import annotations

import torch


def covariance(vectors: torch.Tensor) -> torch.Tensor:
    """L_c = (||C||_F^2 - ||diag C||^2) / n for the covariance C of the rows of `vectors`.

    Args:
        vectors: [n, d] the user and item vectors of the batch, stacked.

    Returns:
        Scalar.
    """
    n = vectors.shape[0]
    centered = vectors - vectors.mean(dim=0, keepdim=True)
    cov = centered.T @ centered / n
    return (cov.pow(2).sum() - cov.diagonal().pow(2).sum()) / n
