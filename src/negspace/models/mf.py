"""Matrix factorisation: score = dot product (or cosine) of user and item embeddings, optionally
plus a learned item bias."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from negspace.errors import NegspaceError
from negspace.models.base import EmbeddingModel, Measure
from negspace.models.unit_rows import unit_rows

INITS = ("normal", "xavier")


class MF(EmbeddingModel):
    """Args:
        n_users, n_items, dim: table sizes.
        measure: "dot" (default) or "cosine" (the vectors are then L2-normalised after the lookup,
            so that their dot product is the cosine and exported vectors rank by dot product too).
        init_std: standard deviation of the normal initialisation.
        init: "normal" (N(0, init_std)) or "xavier" (xavier-normal over each table, as the BSL
            and SSM recipes).
        item_bias: a learned bias b_i added to the score (SimpleX's published recipe adds one to
            the cosine). It is carried by the vectors themselves: users get a last coordinate 1,
            items their bias, and the model's measure becomes "dot" on those vectors, so that
            every scorer, index and export ranks by cos(u, i) + b_i (or u.i + b_i) unchanged.
            `unit_vectors` stays True for a cosine model: the cosine losses read u.i + b_i as
            SimpleX does.
        user_dropout: dropout on the user vector in training rows only (after normalisation).
        sparse: sparse gradients for the tables (lazy Adam: only the rows a batch touches move).
            Dense when every step reads the whole item table and B users with all their
            positives (`--batch-by user`): Adam's momentum then keeps moving the users between
            their visits, once an epoch each, which validated better (docs/results.md).
    """

    def __init__(self, n_users: int, n_items: int, dim: int, measure: Measure = "dot",
                 init_std: float = 0.1, init: str = "normal", item_bias: bool = False,
                 user_dropout: float = 0.0, sparse: bool = True) -> None:
        super().__init__(n_users, n_items, dim)
        if init not in INITS:
            raise NegspaceError(f"MF init must be one of {', '.join(INITS)}; got {init!r}")
        self.cosine = measure == "cosine"
        self.unit_vectors = self.cosine
        self.measure = "dot" if item_bias else measure
        self.users = nn.Embedding(n_users, dim, sparse=sparse)
        self.items = nn.Embedding(n_items, dim, sparse=sparse)
        for table in (self.users, self.items):
            if init == "xavier":
                nn.init.xavier_normal_(table.weight)
            else:
                nn.init.normal_(table.weight, 0.0, init_std)
        self.bias = nn.Embedding(n_items, 1, sparse=sparse) if item_bias else None
        if self.bias is not None:
            nn.init.zeros_(self.bias.weight)
        self.dropout = nn.Dropout(user_dropout) if user_dropout > 0 else None

    def start_from(self, users: np.ndarray, items: np.ndarray) -> None:
        """Replaces the initial tables (e.g. with models/spectral.py's vectors).

        Args:
            users: [n_users, dim]; items: [n_items, dim].
        """
        with torch.no_grad():
            for table, start in ((self.users, users), (self.items, items)):
                if tuple(start.shape) != tuple(table.weight.shape):
                    raise ValueError(f"start vectors {start.shape} for a table of {tuple(table.weight.shape)}")
                table.weight.copy_(torch.as_tensor(start, dtype=table.weight.dtype))

    def _vectors(self, table: nn.Embedding, idx: torch.Tensor | None) -> torch.Tensor:
        v = table.weight if idx is None else table(idx)
        return unit_rows(v) if self.cosine else v

    def _with_bias_slot(self, v: torch.Tensor) -> torch.Tensor:
        """User vectors with the last coordinate 1 that meets the item bias (when there is one)."""
        return v if self.bias is None else torch.cat([v, v.new_ones(len(v), 1)], dim=1)

    def user_vectors(self, users: torch.Tensor | None) -> torch.Tensor:
        return self._with_bias_slot(self._vectors(self.users, users))

    def user_vectors_for_pairs(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        v = self._vectors(self.users, users)
        return self._with_bias_slot(v if self.dropout is None else self.dropout(v))

    def item_vectors(self, items: torch.Tensor | None) -> torch.Tensor:
        v = self._vectors(self.items, items)
        if self.bias is None:
            return v
        b = self.bias.weight if items is None else self.bias(items)
        return torch.cat([v, b], dim=1)
