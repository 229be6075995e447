"""Fold-in: a vector for a user who was not in training, fitted to their items with the item
vectors fixed, so a new user is served without retraining."""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from negspace.errors import NegspaceError
from negspace.models.base import score_vectors

Constraint = Literal["sphere", "ball", "none"]


def fold_in(item_vectors: torch.Tensor, histories: Sequence[Sequence[int]], measure: str,
            constraint: Constraint = "none", loss: str = "bpr", margin: float = 1.0,
            hard: bool = False, steps: int = 150, negatives: int = 32, lr: float = 0.05,
            l2: float = 1e-4,
            seed: int = 0) -> torch.Tensor:
    """User vectors fitted to item histories by gradient descent on the user vectors alone.

    Each step draws `negatives` items per user uniformly; draws that hit one of the user's items
    are dropped from the loss, so only true non-positives act as negatives. Starts from the mean
    of the user's item vectors. Deterministic for a seed.

    Args:
        item_vectors: [n_items, d] scoring vectors (fixed).
        histories: per new user, the item indices they interacted with (at least one each).
        measure: "l2", "dot" or "cosine", as the model scores.
        constraint: "sphere" normalises the user vector (CML), "ball" clips it into the unit
            ball, "none" leaves it free (MF).
        loss: "triplet" (hinge with `margin`) or "bpr" (log-sigmoid), over every
            positive-negative pair, averaged.
        margin: triplet margin.
        hard: triplet only: each positive against the hardest of the step's negatives (for
            models trained with hard negatives, e.g. 2-stage sampling).
        steps: Adam steps.
        negatives: negatives drawn per user per step.
        lr: Adam learning rate.
        l2: L2 penalty on the free user parameters (keeps dot-product vectors finite).
        seed: seeds the negative draws.

    Returns:
        [len(histories), d] float32 user vectors, constraint applied.
    """
    items = item_vectors.detach().float()
    n_items = items.shape[0]
    if any(len(h) == 0 for h in histories):
        raise NegspaceError("fold-in needs at least one item per new user")
    lengths = [len(h) for h in histories]
    pos = torch.zeros(len(histories), max(lengths, default=0), dtype=torch.long)
    pos_mask = torch.zeros(pos.shape, dtype=torch.bool)
    for row, h in enumerate(histories):
        idx = torch.as_tensor(np.asarray(h, np.int64))
        if idx.min() < 0 or idx.max() >= n_items:
            raise NegspaceError(f"fold-in item index out of range [0, {n_items})")
        pos[row, :len(idx)], pos_mask[row, :len(idx)] = idx, True
    seen = torch.zeros(len(histories), n_items, dtype=torch.bool)
    seen[torch.arange(len(histories)).unsqueeze(1).expand_as(pos)[pos_mask], pos[pos_mask]] = True
    weights = pos_mask.float() / pos_mask.sum(1, keepdim=True)
    start = (items[pos] * weights.unsqueeze(-1)).sum(1)
    param = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([param], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    rows = torch.arange(len(histories)).unsqueeze(1)
    for _ in range(steps):
        neg = torch.randint(0, n_items, (len(histories), negatives), generator=gen)
        keep = ~seen[rows, neg]
        u = _constrain(param, constraint)
        s_pos = score_vectors(u.unsqueeze(1), items[pos], measure)       # [U, P]
        s_neg = score_vectors(u.unsqueeze(1), items[neg], measure)       # [U, N]
        if loss == "triplet" and hard:
            # hinge against the hardest admissible draw: stands in for the hard negatives that
            # 2-stage sampling fed the model (with uniform ones the fit drifts from its vectors)
            hardest = s_neg.masked_fill(~keep, float("-inf")).max(1).values.unsqueeze(1)
            terms = F.relu(margin - (s_pos - hardest)).nan_to_num(0.0)  # [U, P]
            mask = pos_mask.float() * keep.any(1, keepdim=True)
        else:
            diff = s_pos.unsqueeze(2) - s_neg.unsqueeze(1)               # [U, P, N]
            terms = F.relu(margin - diff) if loss == "triplet" else F.softplus(-diff)
            mask = (pos_mask.unsqueeze(2) & keep.unsqueeze(1)).float()
        value = (terms * mask).sum() / mask.sum().clamp(min=1) + l2 * param.pow(2).sum()
        opt.zero_grad()
        value.backward()
        opt.step()
    with torch.no_grad():
        return _constrain(param, constraint).detach().clone()


def _constrain(v: torch.Tensor, constraint: Constraint) -> torch.Tensor:
    if constraint == "sphere":
        return F.normalize(v, dim=-1)
    if constraint == "ball":
        return v / v.norm(dim=-1, keepdim=True).clamp(min=1.0)
    return v
