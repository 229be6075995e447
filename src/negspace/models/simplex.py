"""SimpleX (Mao et al., CIKM 2021): a user-id embedding mixed with an aggregate of the user's
history items, scored by cosine."""

from __future__ import annotations

import torch
from torch import nn

from negspace.data.interactions import Interactions
from negspace.errors import NegspaceError
from negspace.models.history import capped_history, history_rows
from negspace.models.base import EmbeddingModel
from negspace.models.unit_rows import unit_rows

AGGREGATORS = ("mean", "user_attention", "self_attention")


class SimpleX(EmbeddingModel):
    """User vector g * e_u + (1 - g) * W_v agg(history), cosine score with the item embedding.

    The history shares the item embedding table. During training the row's positive is masked out
    of its own history (`user_vectors_for_pairs`), as the reference data pipeline does, and dropout
    is applied to the normalised user vector; scoring vectors (`user_vectors`) use the whole
    (capped) history and no dropout.

    Args:
        n_users, n_items, dim: table sizes.
        history: the interactions the histories are read from (the training data).
        aggregator: "mean", "user_attention" (weights softmax(tanh(W_k e_j + b) . e_u)) or
            "self_attention" (the same keys against a learned query).
        gamma: g in [0, 1]; 1 ignores the history.
        history_len: at most this many history items per user (a seeded random subset beyond it).
        dropout: dropout rate on the user vector during training.
        init_std: standard deviation of the embedding initialisation (small: the cosine ignores
            norms, and small vectors make Adam's steps large relative to them).
        dense_items: dense (not sparse) gradients for the item table.
        seed: seeds the choice of the capped history.
    """

    measure = "cosine"
    reads_history = True

    def __init__(self, n_users: int, n_items: int, dim: int, history: Interactions,
                 aggregator: str = "mean", gamma: float = 0.5, history_len: int = 50,
                 dropout: float = 0.1, init_std: float = 1e-3, dense_items: bool = True,
                 seed: int = 0) -> None:
        super().__init__(n_users, n_items, dim)
        if aggregator not in AGGREGATORS:
            raise NegspaceError(f"SimpleX aggregator must be one of {', '.join(AGGREGATORS)}; "
                                f"got {aggregator!r}")
        if not 0.0 <= gamma <= 1.0:
            raise NegspaceError(f"SimpleX gamma must be in [0, 1]; got {gamma}")
        if history_len < 1:
            raise NegspaceError(f"SimpleX history length must be >= 1; got {history_len}")
        self.aggregator, self.gamma, self.history_len = aggregator, gamma, history_len
        self.users = nn.Embedding(n_users, dim, sparse=True)
        # Dense item gradients by default: each step touches B x history_len item rows, most of a
        # typical catalogue, where coalescing a sparse gradient costs more than a dense update.
        self.items = nn.Embedding(n_items, dim, sparse=not dense_items)
        nn.init.normal_(self.users.weight, 0.0, init_std)
        nn.init.normal_(self.items.weight, 0.0, init_std)
        self.w_v = nn.Linear(dim, dim, bias=False)
        nn.init.xavier_normal_(self.w_v.weight)
        if aggregator != "mean":
            self.w_k = nn.Linear(dim, dim)
            nn.init.xavier_normal_(self.w_k.weight)
            nn.init.zeros_(self.w_k.bias)
        if aggregator == "self_attention":
            self.query = nn.Parameter(torch.randn(dim) * dim ** -0.5)
        self.dropout = nn.Dropout(dropout)
        self.seed = seed
        self.set_history(history)

    def set_history(self, history: Interactions) -> None:
        """Reads the users' histories (padded [n_users, L] item indices and a validity mask).

        Called at construction with the training data, and again before the final export so that
        the exported user vectors read the whole training history (validation items included).
        """
        hist, hist_len = capped_history(history, self.n_users, self.n_items, self.history_len,
                                        self.seed)
        # Buffers, not parameters, and not in state_dict: the history is data, not a weight.
        self.register_buffer("hist", torch.from_numpy(hist), persistent=False)
        self.register_buffer("hist_len", torch.from_numpy(hist_len), persistent=False)

    def history(self, users: torch.Tensor,
                exclude: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """History items [B, L] and validity mask [B, L] of `users`; `exclude` ([B] items) is
        masked out of its row (the positive being trained on)."""
        return history_rows(self.hist, self.hist_len, users, exclude)

    def _mix(self, users: torch.Tensor, exclude: torch.Tensor | None) -> torch.Tensor:
        e_u = self.users(users)
        if self.gamma == 1.0:
            return e_u
        items, mask = self.history(users, exclude)
        e_h = self.items(items)                                   # [B, L, d]
        m = mask.unsqueeze(-1).to(e_h.dtype)
        if self.aggregator == "mean":
            agg = (e_h * m).sum(1) / m.sum(1).clamp(min=1.0)
        else:
            keys = torch.tanh(self.w_k(e_h))                      # [B, L, d]
            query = e_u if self.aggregator == "user_attention" else self.query.expand_as(e_u)
            logits = (keys * query.unsqueeze(1)).sum(-1).masked_fill(~mask, -1e9)
            # Padded positions get exactly 0 weight; a row with no history gets an all-zero aggregate.
            attn = torch.softmax(logits, dim=1) * mask
            agg = (attn.unsqueeze(-1) * e_h).sum(1)
        return self.gamma * e_u + (1.0 - self.gamma) * self.w_v(agg)

    def user_vectors(self, users: torch.Tensor | None) -> torch.Tensor:
        if users is None:
            # In chunks: the history tensor is [chunk, L, d].
            users = torch.arange(self.n_users, device=self.hist.device)
            return torch.cat([unit_rows(self._mix(c, None)) for c in users.split(1024)])
        return unit_rows(self._mix(users, None))

    def user_vectors_for_pairs(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.dropout(unit_rows(self._mix(users, items)))

    def item_vectors(self, items: torch.Tensor | None) -> torch.Tensor:
        table = self.items.weight if items is None else self.items(items)
        return unit_rows(table)
