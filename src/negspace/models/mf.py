"""Matrix factorisation: score = dot product (or cosine) of user and item embeddings."""

from __future__ import annotations

import torch
from torch import nn

from negspace.models.base import EmbeddingModel, Measure


class MF(EmbeddingModel):
    """Args:
        n_users, n_items, dim: table sizes.
        measure: "dot" (default) or "cosine" (the vectors are then L2-normalised after the lookup,
            so that their dot product is the cosine and exported vectors rank by dot product too).
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

    def _vectors(self, table: nn.Embedding, idx: torch.Tensor | None) -> torch.Tensor:
        v = table.weight if idx is None else table(idx)
        return nn.functional.normalize(v, dim=-1) if self.measure == "cosine" else v

    def user_vectors(self, users: torch.Tensor | None) -> torch.Tensor:
        return self._vectors(self.users, users)

    def item_vectors(self, items: torch.Tensor | None) -> torch.Tensor:
        return self._vectors(self.items, items)
