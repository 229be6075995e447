"""Embedding-level negatives: candidate item ids shared by a batch, their log sampling
probabilities, optional stored vectors (the memory bank) and the masks of accidental hits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from negspace.data.interactions import Interactions
from negspace.samplers.shared import positives_of


@dataclass
class CandidateSet:
    """Negatives shared by the rows of a batch.

    Args:
        ids: [N] item ids whose vectors the objective computes with the current model (gradient
            flows into them): the batch's positives, or uniform draws.
        log_q: [N] log probability with which each of `ids` was sampled (for the logQ correction).
        mask: [B, N] bool, False where a candidate is an accidental hit of the row.
        bank_vectors: [K, d] stored, detached item vectors (the memory bank), or None.
        bank_ids, bank_log_q, bank_mask: [K], [K] and [B, K], as above for the stored vectors.
        full: whether `ids` is every item in index order (the full softmax).
        log_q_pos: [B] log probability of each row's positive under the same estimate.
    """

    ids: torch.Tensor
    log_q: torch.Tensor
    mask: torch.Tensor
    log_q_pos: torch.Tensor
    bank_vectors: torch.Tensor | None = None
    bank_ids: torch.Tensor | None = None
    bank_log_q: torch.Tensor | None = None
    bank_mask: torch.Tensor | None = None
    full: bool = False  # ids are the whole catalogue in order: the objective reads the table whole
    # Under --nproc, for in-batch ids gathered from every rank: maps this rank's [B, d] positive
    # vectors to the global batch's (all ranks', in rank order), with gradient (distributed.py).
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None


def popularity_log_q(train: Interactions) -> np.ndarray:
    """log q_i = log(count_i / nnz): the probability that a slot of a shuffled batch holds item i,
    estimated from the training counts (items never seen get log 0 -> -inf; they never occur in a
    batch, so the value is never used). The counts sum the pairs' values: 1 each for binary
    training data, the confidences when the trainer draws pairs in proportion to them
    (data/confidence.py), so q stays the probability of the draw."""
    counts = np.bincount(train.indices, weights=train.matrix.data.astype(np.float64),
                         minlength=train.n_items)
    with np.errstate(divide="ignore"):
        return np.log(counts / counts.sum())


def accidental_hit_mask(train: Interactions, users: np.ndarray, items: np.ndarray,
                        candidates: np.ndarray, all_positives: bool) -> np.ndarray:
    """[B, N] bool, False where candidate j must not be a negative of row b: it is the row's
    positive (always), or any training positive of the row's user (with `all_positives`)."""
    keep = candidates[None, :] != items[:, None]
    if all_positives and len(candidates):
        keep &= ~positives_of(train, users, candidates)
    return keep
