"""The multinomial likelihood of a user's positives over the catalogue (Mult-VAE's, the full
softmax batched by users) from a [users, items] score matrix, with a hand-written backward.

Why by hand: the score matrix is the largest tensor of a step (256 users x 41k items is 42 MB on
gowalla-lightgcn), and autograd's logsumexp and gather pass over it about ten times and allocate
it five times; this version passes over it five times and allocates it once, keeping
exp(score - max) from the forward for the backward.
"""

from __future__ import annotations

import torch


class _MultinomialNLL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, rows: torch.Tensor,  # type: ignore[override]
                cols: torch.Tensor, log_weight: torch.Tensor | None) -> torch.Tensor:
        n_pairs = max(len(rows), 1)
        with torch.no_grad():
            shifted = logits if log_weight is None else logits + log_weight
            top = shifted.amax(dim=1, keepdim=True).clamp_min(torch.finfo(logits.dtype).min)
            e = torch.sub(shifted, top)  # a new buffer: the caller's logits stay as they were
            e.exp_()
            total = e.sum(dim=1, keepdim=True)
            lse = top.squeeze(1) + total.squeeze(1).log()
            # positives a row (index_add_, not bincount: on a GPU bincount reads its largest
            # value back to the host)
            counts = torch.zeros_like(lse).index_add_(0, rows, torch.ones_like(rows, dtype=lse.dtype))
            loss = ((counts * lse).sum() - logits[rows, cols].sum()) / n_pairs
        ctx.save_for_backward(e, total, counts, rows, cols)
        ctx.n_pairs = n_pairs
        return loss

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        e, total, counts, rows, cols = ctx.saved_tensors
        scale = grad / ctx.n_pairs
        # d/d logits: counts_u x softmax_u - (1 at each positive), times the mean's 1 / n_pairs
        out = e * (counts.unsqueeze(1) / total * scale)
        out.index_put_((rows, cols), -scale.expand(len(rows)).to(out.dtype), accumulate=True)
        return out, None, None, None


def multinomial_nll(logits: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                    log_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over positive pairs of -log softmax(logits[row])[col].

    Args:
        logits: [B, n] scores of the batch's users over n candidates.
        rows, cols: the batch row and candidate column of each positive pair (distinct pairs).
        log_weight: [n] log-weights added to the scores inside the softmax's sum only (a
            sampled estimate of the catalogue's sum; -inf drops a column), or None.

    Returns:
        Scalar: sum over pairs of (logsumexp_row(logits + log_weight) - logits[row, col]),
        divided by the number of pairs.
    """
    return _MultinomialNLL.apply(logits, rows, cols, log_weight)
