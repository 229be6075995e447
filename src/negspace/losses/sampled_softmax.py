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
    # x / 1 is x: skip the two passes (forward and backward) over [B, N] at the default T = 1
    pos_logit = pos / temperature if temperature != 1.0 else pos
    neg_logit = neg / temperature if temperature != 1.0 else neg
    if logq_strength:
        if log_q_pos is not None:
            pos_logit = pos_logit - logq_strength * log_q_pos
        if log_q_neg is not None:
            neg_logit = neg_logit - logq_strength * log_q_neg
    neg_logit = neg_logit.expand(len(pos), -1) if neg_logit.dim() == 1 else neg_logit
    if mask is not None:  # where(): half the time of masked_fill(~mask) here, forward and backward
        neg_logit = torch.where(mask, neg_logit, _neg_inf(neg_logit))
    logits = torch.cat([pos_logit.unsqueeze(1), neg_logit], dim=1)
    return _logsumexp_rows(logits) - pos_logit


_NEG_INF = torch.tensor(float("-inf"))


def _neg_inf(like: torch.Tensor) -> torch.Tensor:
    """-inf as a 0-d tensor on `like`'s device (filled there: no host copy on a GPU)."""
    return _NEG_INF if like.device.type == "cpu" else like.new_full((), float("-inf"))
_FLOOR = -80.0  # exp(-80) = 1.8e-35: below float32 resolution of a sum that holds a 1


def _logsumexp_rows(logits: torch.Tensor) -> torch.Tensor:
    """log sum_j exp(logits[:, j]), with every logit floored at the row maximum - 80 before exp().

    The floor changes the value by at most n * exp(-80) relative (4e-32 for n = 2,305: nothing in
    float32) and gives the floored terms a zero gradient instead of one below 1e-35; masked (-inf)
    logits stay at zero gradient. It keeps exp() on its vectorised path: logits far below the row
    maximum underflow to denormals and zeros, where exp() is several times slower (the memory
    bank's [256, 2,305] logits: 1.7 ms for torch.logsumexp's exp against 0.5 ms).
    """
    top = logits.detach().amax(dim=1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))  # a row with every logit masked
    z = (logits - top).clamp(min=_FLOOR)
    return torch.log(torch.exp(z).sum(dim=1)) + top.squeeze(1)


def bilateral_softmax(pos: torch.Tensor, neg: torch.Tensor, temperature: float,
                      negative_temperature: float, mask: torch.Tensor | None = None,
                      log_q_neg: torch.Tensor | None = None) -> torch.Tensor:
    """Per-row terms of BSL, the bilateral softmax loss (Wu et al., "BSL: Understanding and
    Improving Softmax Loss for Recommendation", ICDE 2024), in the form of the paper's pseudo-code:

        -s_pos / t1 + (t2 / t1) * log sum_j exp(s_j / t2)

    t1 (`temperature`) on the positive side, t2 (`negative_temperature`) on the negatives; with
    t1 = t2 it is the softmax loss with the positive left out of the denominator.

    Args:
        pos: [B] scores of the positives.
        neg: [B, N] (or [N], broadcast) scores of the negatives.
        temperature: t1 > 0.
        negative_temperature: t2 > 0.
        mask: [B, N] bool, False where a negative is removed.
        log_q_neg: [N] or [B, N] log sampling probabilities of the negatives (logQ-corrected
            negative logits s_j / t2 - log q_j), or None.

    Returns:
        [B] loss terms.
    """
    neg_logit = neg / negative_temperature
    if log_q_neg is not None:
        neg_logit = neg_logit - log_q_neg
    neg_logit = neg_logit.expand(len(pos), -1) if neg_logit.dim() == 1 else neg_logit
    if mask is not None:
        neg_logit = torch.where(mask, neg_logit, _neg_inf(neg_logit))
    return -pos / temperature + (negative_temperature / temperature) * _logsumexp_rows(neg_logit)
