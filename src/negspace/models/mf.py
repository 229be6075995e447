"""Matrix factorisation: score = dot product (or cosine) of user and item embeddings."""

from __future__ import annotations

import torch
from torch import nn

from negspace.models.base import EmbeddingModel, Measure


class MF(EmbeddingModel):
    """Args:
        n_users, n_items, dim: table sizes.
        measure: "dot" (default) or "cosine".
        init_std: standard deviation of the normal initialisation.
    """

    def __init__(self, n_users: int, n_items: int, dim: int, measure: Measure = "dot",
                 init_std: float = 0.1) -> None:
        super().__init__(n_users, n_items, dim)
        self.measure = measure
        self.users = nn.Embedding(n_users, dim, sparse=True)
        self.items = nn.Embedding(n_items, dim, sparse=True)
        nn.init.normal_(self.users.weight, 0.0, init_std)
        nn.init.normal_(self.items.weight, 0.0, init_std)

    def user_vectors(self, users: torch.Tensor | None) -> torch.Tensor:
        return self.users.weight if users is None else self.users(users)

    def item_vectors(self, items: torch.Tensor | None) -> torch.Tensor:
        return self.items.weight if items is None else self.items(items)
