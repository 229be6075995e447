"""A hand-written step for cosine MF with the MML or CCL loss over negatives shared by the batch.

The autograd step of MF + MML with 800 shared negatives is ~200 torch operations (8x to 13x its
"bound + dense", docs/performance.md). Here the gradient with respect to the looked-up rows is in
closed form: the three [B, d] x [d, N]-sized products run in torch (BLAS), everything else (the
lookups and normalisations, the margin terms and their slopes, the back-projection through the
normalisation, lazy Adam on the touched rows) in the numba loops of training/shared_kernels.py and
training/kernels.py. Equal to the autograd step to float rounding (tests/training/test_shared_step.py).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from negspace.models.base import EmbeddingModel
from negspace.models.mf import MF
from negspace.registry import LossFamily
from negspace.samplers.base import NegativeSampler, SamplerKind
from negspace.training import kernels, shared_kernels
from negspace.training.objective import Objective
from negspace.training.optim import RowAdam

AVAILABLE = shared_kernels.AVAILABLE


class SharedCosineStep:
    """Loss and update of cosine MF with MML or CCL over shared negatives (masked per row).

    Args:
        model: the MF model (measure cosine, sparse tables).
        objective: its MML or CCL objective, without GOR, covariance or L2 terms.
        optimizer: the RowAdam holding both tables.
    """

    def __init__(self, model: MF, objective: Objective, optimizer: RowAdam) -> None:
        self.model, self.objective, self.optimizer = model, objective, optimizer
        if objective.loss == "ccl":  # CCL is MML with one margin of weight 1 and a_p = 1
            margins, weights, pos_w = (objective.margin,), (1.0,), 1.0
        else:
            margins, weights = objective.margins, objective.margin_weights
            pos_w = objective.positive_weight
        self.margins = np.asarray(margins, np.float32)
        self.weights = np.asarray(weights, np.float32)
        self.pos_weight, self.neg_weight = float(pos_w), float(objective.negative_weight)

    @staticmethod
    def applies(model: EmbeddingModel, objective: Objective, sampler: NegativeSampler,
                optimizer: RowAdam | None) -> bool:
        """Whether this step computes exactly what the autograd step would, on the CPU."""
        cosine = getattr(model, "cosine", model.measure == "cosine")
        return (AVAILABLE and type(model) is MF and cosine and model.measure == "cosine"
                and getattr(model, "bias", None) is None and getattr(model, "dropout", None) is None
                and optimizer is not None and model.users.weight.device.type == "cpu"
                and objective.family is LossFamily.COSINE and not objective.gor_weight
                and not objective.cov_weight and not objective.l2_weight
                and sampler.kind is SamplerKind.SHARED)

    @torch.no_grad()
    def __call__(self, users: torch.Tensor, items: torch.Tensor, negatives: torch.Tensor,
                 keep: torch.Tensor) -> tuple[torch.Tensor, Callable[[], None]]:
        """Args:
            users, items: [B] the positive pairs.
            negatives: [N] shared negative items.
            keep: [B, N] bool, False where a negative is a positive of the row's user.

        Returns:
            (scalar loss, a function that applies the update): the caller checks the loss first.
        """
        loss, (g_u, item_grads), (u_ids, item_ids) = self.loss_and_grads(users, items, negatives, keep)
        wu, wi = self.model.users.weight, self.model.items.weight

        def update() -> None:
            kernels.update_rows(self.optimizer, ((wu, u_ids, g_u), (wi, item_ids, item_grads)))
        return torch.tensor(float(loss)), update

    def loss_and_grads(self, users: torch.Tensor, items: torch.Tensor, negatives: torch.Tensor,
                       keep: torch.Tensor):
        """The batch loss, the gradient rows of the user table [B, d] and of the item table
        ([B + N, d]: positives, then negatives) with the row ids they belong to."""
        wu = self.model.users.weight.detach().numpy()
        wi = self.model.items.weight.detach().numpy()
        u_ids, p_ids, n_ids = users.numpy(), items.numpy(), negatives.numpy()
        b, n, d = len(u_ids), len(n_ids), wu.shape[1]
        u, ru = np.empty((b, d), np.float32), np.empty(b, np.float32)
        # positives' and negatives' vectors (then gradients) in one buffer: item_ids' order
        pn, rpn = np.empty((b + n, d), np.float32), np.empty(b + n, np.float32)
        p, neg, rp, rn = pn[:b], pn[b:], rpn[:b], rpn[b:]
        item_ids = np.concatenate([p_ids, n_ids])
        pos, g_pos = np.empty(b, np.float32), np.empty(b, np.float32)
        shared_kernels.prepare(wu, wi, u_ids, item_ids, u, pn, ru, rpn, pos)
        ut, nt = torch.from_numpy(u), torch.from_numpy(neg)
        scores = torch.mm(ut, nt.T)                                    # [B, N]
        loss = shared_kernels.margin_terms(scores.numpy(), keep.numpy(), pos, self.margins,
                                           self.weights, self.pos_weight, self.neg_weight, g_pos)
        g = scores                                                     # now dLoss/dscores
        g_u = torch.mm(g, nt).numpy()                                  # [B, d]
        item_grads = np.empty((b + n, d), np.float32)
        torch.mm(g.T, ut, out=torch.from_numpy(item_grads[b:]))       # [N, d]
        shared_kernels.finish_grads(g_u, item_grads[:b], item_grads[b:], u, p, neg, g_pos,
                                    ru, rp, rn)
        return loss, (g_u, item_grads), (u_ids, item_ids)
