"""Norm penalties on the embeddings a batch touches."""

from __future__ import annotations

import torch


def embedding_l2(*tensors: torch.Tensor) -> torch.Tensor:
    """Sum of squared entries of the looked-up vectors divided by the batch size (rows of the first
    tensor), the usual per-batch weight decay of MF-BPR."""
    batch = tensors[0].shape[0]
    return sum(t.pow(2).sum() for t in tensors) / batch
