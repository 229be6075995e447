"""Collaborative Metric Learning: users and items in one Euclidean space, score = -distance."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from negspace.errors import NegspaceError
from negspace.models.base import EmbeddingModel
from negspace.models.unit_rows import unit_rows


class CML(EmbeddingModel):
    """Args:
        n_users, n_items, dim: table sizes.
        norm: "sphere" L2-normalises vectors after the lookup (Tran et al.); "ball" clips the looked-up
            rows into the unit ball, as the original CML does after each update.
    """

    measure = "l2"

    def __init__(self, n_users: int, n_items: int, dim: int,
                 norm: Literal["sphere", "ball"] = "sphere") -> None:
        super().__init__(n_users, n_items, dim)
        if norm not in ("sphere", "ball"):
            raise NegspaceError(f"CML norm must be 'sphere' or 'ball', got {norm!r}")
        self.norm = norm
        max_norm = 1.0 if norm == "ball" else None
        self.users = nn.Embedding(n_users, dim, sparse=True, max_norm=max_norm)
        self.items = nn.Embedding(n_items, dim, sparse=True, max_norm=max_norm)
        std = 1.0 / dim ** 0.5  # rows start with norm close to 1
        nn.init.normal_(self.users.weight, 0.0, std)
        nn.init.normal_(self.items.weight, 0.0, std)

    def _vectors(self, table: nn.Embedding, idx: torch.Tensor | None) -> torch.Tensor:
        if idx is None:
            idx = torch.arange(table.num_embeddings, device=table.weight.device)
        v = table(idx)
        return unit_rows(v) if self.norm == "sphere" else v

    def user_vectors(self, users: torch.Tensor | None) -> torch.Tensor:
        return self._vectors(self.users, users)

    def item_vectors(self, items: torch.Tensor | None) -> torch.Tensor:
        return self._vectors(self.items, items)
