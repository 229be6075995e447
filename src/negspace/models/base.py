"""The model contract: scoring vectors for users and items under a declared measure."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from negspace.models.unit_rows import unit_rows

Measure = Literal["l2", "dot", "cosine"]


class EmbeddingModel(nn.Module):
    """A recommender whose score is a function of one user vector and one item vector.

    Subclasses define `measure` and the two vector lookups; everything else (pairwise scores, full
    ranking, export) follows from them.
    """

    measure: Measure = "dot"
    # Whether the vectors read the training interactions (set_history(interactions) replaces
    # them: the final export reads the whole training data, validation interactions included).
    reads_history: bool = False

    def __init__(self, n_users: int, n_items: int, dim: int) -> None:
        super().__init__()
        self.n_users, self.n_items, self.dim = n_users, n_items, dim

    def user_vectors(self, users: torch.Tensor | None) -> torch.Tensor:
        """Scoring vectors of the given users (all users when None)."""
        raise NotImplementedError

    def item_vectors(self, items: torch.Tensor | None) -> torch.Tensor:
        """Scoring vectors of the given items (all items when None)."""
        raise NotImplementedError

    def user_vectors_for_pairs(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """User vectors of training rows (user, positive item). Models whose user vector reads the
        user's history leave that row's positive out of it, so the loss never sees it twice; the
        others ignore `items`."""
        return self.user_vectors(users)

    def score(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Scores of aligned vectors: u [..., d] with v [..., d] -> [...]; higher is better."""
        return score_vectors(u, v, self.measure)

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        """[len(users), n_items] scores for full ranking."""
        return score_matrix(self.user_vectors(users), self.item_vectors(None), self.measure)

    def sparse_parameters(self) -> list[nn.Parameter]:
        """Parameters that receive sparse gradients (embedding tables)."""
        return [m.weight for m in self.modules() if isinstance(m, nn.Embedding) and m.sparse]


def score_vectors(u: torch.Tensor, v: torch.Tensor, measure: Measure) -> torch.Tensor:
    if measure == "l2":
        return -(u - v).pow(2).sum(-1)
    if measure == "cosine":
        return nn.functional.cosine_similarity(u, v, dim=-1)
    return (u * v).sum(-1)


def score_matrix(u: torch.Tensor, v: torch.Tensor, measure: Measure) -> torch.Tensor:
    """All-pairs scores [n_u, n_v] for the measure (negative squared distance for l2)."""
    if measure == "l2":
        return 2 * u @ v.T - u.pow(2).sum(-1, keepdim=True) - v.pow(2).sum(-1)
    if measure == "cosine":
        u, v = unit_rows(u), unit_rows(v)
    return u @ v.T
