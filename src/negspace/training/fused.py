"""A hand-written training step for CML on the unit sphere with the hardest-of-N triplet hinge.

The autograd step of that model is about 200 small torch operations, most of their cost dispatch
and bookkeeping (docs/performance.md). Here the gradient of the loss with respect to the looked-up
rows is written in closed form and handed to RowAdam's row update directly, without autograd or
sparse gradient tensors: the same maths as the autograd step (gradients equal to float rounding,
tests/training/test_fused.py), in about a third of the operations.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from negspace.errors import NegspaceError
from negspace.models.cml import CML
from negspace.models.base import EmbeddingModel
from negspace.registry import LossFamily
from negspace.samplers.base import NegativeSampler, SamplerKind
from negspace.training.objective import Objective
from negspace.training import kernels
from negspace.training.optim import RowAdam, sum_rows


class CMLTripletStep:
    """Loss and update of CML (sphere) with the triplet hinge over per-row negatives.

    Covers the options of `Objective` that CML's paper uses: margin, the WARP-style rank weight
    and GOR; anything else (covariance or L2 penalties, a bank, shared negatives) takes the
    autograd step. See `applies`.

    Args:
        model: the CML model.
        objective: its triplet objective.
        optimizer: the RowAdam holding the model's two tables.
        compiled: run the numba kernels of training/kernels.py (default: when numba is
            installed, a default dependency) on the CPU; else the same maths as torch
            operations (always on a GPU).
    """

    def __init__(self, model: CML, objective: Objective, optimizer: RowAdam,
                 compiled: bool | None = None) -> None:
        self.model, self.objective, self.optimizer = model, objective, optimizer
        on_cpu = model.users.weight.device.type == "cpu"  # the kernels read host memory
        self.compiled = kernels.AVAILABLE and on_cpu if compiled is None else compiled
        if self.compiled and not kernels.AVAILABLE:
            raise NegspaceError("the compiled CML step needs numba: pip install numba")

    @staticmethod
    def applies(model: EmbeddingModel, objective: Objective, sampler: NegativeSampler,
                optimizer: RowAdam | None) -> bool:
        """Whether this step computes exactly what the autograd step would."""
        return (type(model) is CML and model.norm == "sphere" and optimizer is not None
                and objective.family is LossFamily.HINGE and not objective.cov_weight
                and not objective.l2_weight
                and sampler.kind is SamplerKind.PER_ROW)

    @torch.no_grad()
    def __call__(self, users: torch.Tensor, items: torch.Tensor,
                 negatives: torch.Tensor) -> tuple[torch.Tensor, Callable[[], None]]:
        """Args:
            users, items: [B] the positive pairs.
            negatives: [B, N] per-row negative items.

        Returns:
            (scalar loss, a function that applies the update): the caller checks the loss first.
        """
        if self.compiled:
            return self._compiled(users, items, negatives)
        loss, grads = self.loss_and_grads(users, items, negatives)
        wu, wi = self.model.users.weight, self.model.items.weight
        item_ids = torch.cat([items, negatives.reshape(-1)])

        def update() -> None:
            self.optimizer.update_rows(wu, *sum_rows(users, grads[0]))
            self.optimizer.update_rows(wi, *sum_rows(item_ids, torch.cat(grads[1:])))
        return loss, update

    def _compiled(self, users: torch.Tensor, items: torch.Tensor, negatives: torch.Tensor
                  ) -> tuple[torch.Tensor, Callable[[], None]]:
        obj, (b, n_neg) = self.objective, negatives.shape
        wu, wi = self.model.users.weight, self.model.items.weight
        d = wu.shape[1]
        g_u = np.empty((b, d), np.float32)
        # positives' and negatives' gradient rows in one buffer, in the order of item_ids below
        item_grads = np.empty((b * (1 + n_neg), d), np.float32)
        g_p, g_n = item_grads[:b], item_grads[b:].reshape(b, n_neg, d)
        u_np, i_np, n_np = users.numpy(), items.numpy(), negatives.numpy()
        loss = kernels.loss_and_grads(
            wu.detach().numpy(), wi.detach().numpy(), u_np, i_np, n_np, float(obj.margin),
            float(obj.gor_weight), self.model.n_items if obj.rank_weight else 0, g_u, g_p, g_n)

        def update() -> None:
            item_ids = np.concatenate([i_np, n_np.reshape(-1)])
            kernels.update_rows(self.optimizer, ((wu, u_np, g_u), (wi, item_ids, item_grads)))
        return torch.tensor(float(loss)), update

    @torch.no_grad()
    def loss_and_grads(self, users: torch.Tensor, items: torch.Tensor, negatives: torch.Tensor
                       ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The batch loss and its gradient with respect to the looked-up rows.

        Returns:
            (loss, (d/d user rows [B, d], d/d positive rows [B, d], d/d negative rows [B*N, d])).
        """
        obj, (b, n_neg) = self.objective, negatives.shape
        raw_u = self.model.users.weight.index_select(0, users)
        raw_p = self.model.items.weight.index_select(0, items)
        raw_n = self.model.items.weight.index_select(0, negatives.reshape(-1)).view(b, n_neg, -1)
        ru, rp, rn = (x.norm(dim=-1, keepdim=True).clamp_min_(kernels.NORM_EPS) for x in (raw_u, raw_p, raw_n))
        u, p, n = raw_u / ru, raw_p / rp, raw_n / rn
        diff_p = u - p                                   # d/du of |u - p|^2 is 2 (u - p)
        diff_n = u.unsqueeze(1) - n                      # [B, N, d]
        d2_pos = diff_p.pow(2).sum(-1)
        d2_neg = diff_n.pow(2).sum(-1)
        hardest, k = d2_neg.min(dim=1)
        hinge = d2_pos - hardest + obj.margin
        weight = (hinge > 0).to(u.dtype)                 # the hinge's slope per row
        if obj.rank_weight:                              # as triplet_hinge: a constant weight
            impostors = (d2_neg < (d2_pos + obj.margin).unsqueeze(1)).sum(dim=1).to(u.dtype)
            weight = weight * torch.log1p(torch.floor(self.model.n_items * impostors / n_neg))
        loss = (weight * hinge).sum()
        rows = torch.arange(b, device=users.device)
        diff_k = diff_n[rows, k]                         # u - n_k, the hardest negative's
        w2 = (2 * weight).unsqueeze(1)
        g_u = w2 * (diff_p - diff_k)
        g_p = -w2 * diff_p
        g_n = torch.zeros_like(n)
        g_n[rows, k] = w2 * diff_k
        if obj.gor_weight:
            loss = loss + obj.gor_weight * self._gor(p, n, g_p, g_n)
        # back through v = raw / |raw|: (g - v (v . g)) / |raw|
        grads = tuple((g - v * (g * v).sum(-1, keepdim=True)) / r
                      for g, v, r in ((g_u, u, ru), (g_p, p, rp), (g_n, n, rn)))
        return loss, (grads[0], grads[1], grads[2].reshape(b * n_neg, -1))

    def _gor(self, p: torch.Tensor, n: torch.Tensor, g_p: torch.Tensor,
             g_n: torch.Tensor) -> torch.Tensor:
        """regularizers.gor's value; adds its gradient (times the weight) into g_p and g_n."""
        dots = (p.unsqueeze(1) * n).sum(-1)              # [B, N]
        q, m1, m2 = dots.numel(), dots.mean(), dots.pow(2).mean()
        over = m2 - 1.0 / p.shape[-1]
        coef = (2 * m1 / q).expand_as(dots)              # d/d dots of m1^2
        # and of [m2 - 1/d]_+ (a where, not an if: no wait for the device)
        coef = torch.where(over > 0, coef + dots * (2.0 / q), coef)
        coef *= self.objective.gor_weight
        g_p += (coef.unsqueeze(2) * n).sum(1)
        g_n += coef.unsqueeze(2) * p.unsqueeze(1)
        return m1 * m1 + torch.relu(over)
