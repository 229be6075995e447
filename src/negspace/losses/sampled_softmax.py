"""Sampled softmax with a temperature, the logQ correction and masked accidental hits."""

from __future__ import annotations

import torch


def sampled_softmax(pos: torch.Tensor, neg: torch.Tensor, temperature: float = 1.0,
                    log_q_pos: torch.Tensor | None = None, log_q_neg: torch.Tensor | None = None,
                    logq_strength: float = 1.0, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-row terms -log softmax of the positive among {positive} + negatives.

    Logits are s / T - A * log q (Yi et al., RecSys 2019): candidates that are sampled often (the
    popular items, in a batch drawn from the data) are pushed down less, which makes the sampled
    softmax an unbiased estimate of the full one when A = 1. The correction applies to the
    positive too, because with in-batch and bank negatives it is itself a sampled candidate.

    Args:
        pos: [B] scores of the positives.
        neg: [B, N] scores of the negatives (or [N], shared by every row: broadcast).
        temperature: T > 0.
        log_q_pos: [B] log sampling probability of each positive (None: no correction).
        log_q_neg: [N] or [B, N] log sampling probability of the negatives (None: no correction).
        logq_strength: A; 0 disables the correction.
        mask: [B, N] bool, False where a negative is removed (an accidental hit).

    Returns:
        [B] loss terms.
    """
    pos_logit = pos / temperature
    neg_logit = neg / temperature
    if logq_strength:
        if log_q_pos is not None:
            pos_logit = pos_logit - logq_strength * log_q_pos
        if log_q_neg is not None:
            neg_logit = neg_logit - logq_strength * log_q_neg
    neg_logit = neg_logit.expand(len(pos), -1) if neg_logit.dim() == 1 else neg_logit
    if mask is not None:
        neg_logit = neg_logit.masked_fill(~mask, float("-inf"))
    logits = torch.cat([pos_logit.unsqueeze(1), neg_logit], dim=1)
    return torch.logsumexp(logits, dim=1) - pos_logit
