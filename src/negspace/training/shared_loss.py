"""The MML/CCL terms over negatives shared by the batch as one autograd function: the margin
terms and their slopes in one compiled loop (training/shared_kernels.py), the three [B, N]-sized
products in torch. Any model's vectors go in (SimpleX, MF with a bias or dropout, CML on the
sphere), so the models without a hand-written step (training/shared_step.py) save the loss's
~30 autograd operations (four margins, masks, means) and their backward. CPU and numba only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from negspace.registry import LossFamily
from negspace.training import shared_kernels


def applies(objective: Any, u: torch.Tensor) -> bool:
    """Whether `shared_margin_loss` computes the objective's whole loss for these vectors."""
    return (shared_kernels.AVAILABLE and u.device.type == "cpu" and u.dtype == torch.float32
            and objective.family is LossFamily.COSINE and not objective.gor_weight
            and not objective.cov_weight and not objective.l2_weight)


def shared_margin_loss(u: torch.Tensor, p: torch.Tensor, n: torch.Tensor,
                       keep: torch.Tensor | None, objective: Any) -> torch.Tensor:
    """Mean over rows of a_p [1 - u.p]_+ + a_n mean_{kept j} sum_k lam_k [u.n_j - m_k]_+.

    Args:
        u, p: [B, d] user and positive vectors; n: [N, d] shared negative vectors.
        keep: [B, N] bool, False where a negative is a positive of the row's user (None: all).
        objective: the Objective (loss "mml" or "ccl" and its margins and weights).
    """
    if objective.loss == "ccl":
        margins, weights, pos_w = (objective.margin,), (1.0,), 1.0
    else:
        margins, weights, pos_w = objective.margins, objective.margin_weights, objective.positive_weight
    if keep is None:
        keep = torch.ones((len(u), len(n)), dtype=torch.bool)
    return _SharedMargin.apply(u, p, n, keep, np.asarray(margins, np.float32),
                               np.asarray(weights, np.float32), float(pos_w),
                               float(objective.negative_weight))


class _SharedMargin(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, p, n, keep, margins, weights, pos_w, neg_w):  # noqa: D102
        ud, pd, nd = u.detach(), p.detach(), n.detach()
        slopes = torch.mm(ud, nd.T)                       # the scores, then dLoss/dscores
        pos = (ud * pd).sum(-1).contiguous()
        g_pos = torch.empty(len(u))
        loss = shared_kernels.margin_terms(slopes.numpy(), keep.contiguous().numpy(), pos.numpy(),
                                           margins, weights, pos_w, neg_w, g_pos.numpy())
        ctx.save_for_backward(ud, pd, nd, slopes, g_pos)
        return torch.tensor(float(loss))

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        u, p, n, slopes, g_pos = ctx.saved_tensors
        gp = g_pos.unsqueeze(1)
        g_u = torch.addmm(gp * p, slopes, n) * grad
        return g_u, (gp * u) * grad, torch.mm(slopes.T, u) * grad, None, None, None, None, None
