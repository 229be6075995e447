"""Two-tower model: a user tower (id, side features, mean of the history's item embeddings) and an
item tower (id, side features), each ending in a small MLP; score = dot product or cosine."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from negspace.data.interactions import Interactions
from negspace.errors import NegspaceError
from negspace.models.history import capped_history, history_rows
from negspace.models.base import EmbeddingModel, Measure
from negspace.models.unit_rows import unit_rows


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))


class TwoTower(EmbeddingModel):
    """User vector MLP_u([e_u, W_u x_u, mean_{j in H(u)} e_j]), item vector MLP_i([e_i, W_i x_i]).

    The history items' embeddings e_j are the item tower's id embeddings. A training row's positive
    is masked out of its own history (`user_vectors_for_pairs`), so the user tower never reads the
    item being predicted. No dropout: the towers are the same in train and eval mode, which keeps
    the drift measurement and the memory bank's stored vectors comparable to later outputs.

    Args:
        n_users, n_items, dim: table sizes and output dimension.
        history: interactions the histories are read from (the training data).
        user_features: [n_users, F_u] float side features, or None (ids and history only).
        item_features: [n_items, F_i] float side features, or None.
        hidden: width of each tower's hidden layer (default dim).
        history_len: at most this many history items per user (a seeded random subset beyond).
        measure: "dot", or "cosine" (both towers' outputs L2-normalised).
        init_std: standard deviation of the id embeddings' initialisation.
        seed: seeds the choice of the capped history.
    """

    reads_history = True

    def __init__(self, n_users: int, n_items: int, dim: int, history: Interactions,
                 user_features: np.ndarray | None = None, item_features: np.ndarray | None = None,
                 hidden: int | None = None, history_len: int = 50, measure: Measure = "dot",
                 init_std: float = 0.1, seed: int = 0) -> None:
        super().__init__(n_users, n_items, dim)
        if measure not in ("dot", "cosine"):
            raise NegspaceError(f"two-tower measure must be 'dot' or 'cosine'; got {measure!r}")
        self.measure, self.history_len, self.seed = measure, history_len, seed
        hidden = hidden or dim
        self.users = nn.Embedding(n_users, dim, sparse=True)  # a batch touches B rows only
        self.items = nn.Embedding(n_items, dim)  # dense: histories touch most of the catalogue
        nn.init.normal_(self.users.weight, 0.0, init_std)
        nn.init.normal_(self.items.weight, 0.0, init_std)
        self.n_user_features = 0 if user_features is None else user_features.shape[1]
        self.n_item_features = 0 if item_features is None else item_features.shape[1]
        for name, x, n in (("user", user_features, n_users), ("item", item_features, n_items)):
            if x is not None and x.shape[0] != n:
                raise NegspaceError(f"{name} features have {x.shape[0]} rows for {n} {name}s")
        self.user_proj = nn.Linear(self.n_user_features, dim) if self.n_user_features else None
        self.item_proj = nn.Linear(self.n_item_features, dim) if self.n_item_features else None
        self.user_mlp = _mlp(dim * (3 if self.user_proj else 2), hidden, dim)
        self.item_mlp = _mlp(dim * (2 if self.item_proj else 1), hidden, dim)
        # Data, not weights: buffers outside state_dict.
        self.register_buffer("user_x", torch.as_tensor(
            user_features if user_features is not None else np.zeros((n_users, 0)),
            dtype=torch.float32), persistent=False)
        self.register_buffer("item_x", torch.as_tensor(
            item_features if item_features is not None else np.zeros((n_items, 0)),
            dtype=torch.float32), persistent=False)
        self.set_history(history)

    def set_history(self, history: Interactions) -> None:
        """Reads the users' histories ([n_users, L] item indices, lengths); called again with the
        whole training set before the final export."""
        hist, hist_len = capped_history(history, self.n_users, self.n_items, self.history_len,
                                        self.seed)
        self.register_buffer("hist", torch.from_numpy(hist), persistent=False)
        self.register_buffer("hist_len", torch.from_numpy(hist_len), persistent=False)

    def _history_mean(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # One fused gather-and-weighted-sum (embedding_bag): forward and backward over B x L
        # rows without the [B, L, d] product and its backward (about half the time at B = 256).
        m = mask.to(torch.float32)
        weights = m / m.sum(1, keepdim=True).clamp(min=1.0)
        return F.embedding_bag(items, self.items.weight, mode="sum", per_sample_weights=weights)

    def _user_tower(self, id_vectors: torch.Tensor, x: torch.Tensor,
                    history_mean: torch.Tensor) -> torch.Tensor:
        parts = [id_vectors] + ([self.user_proj(x)] if self.user_proj else []) + [history_mean]
        out = self.user_mlp(torch.cat(parts, dim=-1))
        return unit_rows(out) if self.measure == "cosine" else out

    def _users(self, users: torch.Tensor, exclude: torch.Tensor | None) -> torch.Tensor:
        items, mask = history_rows(self.hist, self.hist_len, users, exclude)
        return self._user_tower(self.users(users), self.user_x[users],
                                self._history_mean(items, mask))

    def user_vectors(self, users: torch.Tensor | None) -> torch.Tensor:
        if users is None:
            users = torch.arange(self.n_users, device=self.hist.device)
            return torch.cat([self._users(c, None) for c in users.split(1024)])
        return self._users(users, None)

    def user_vectors_for_pairs(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self._users(users, items)

    def item_vectors(self, items: torch.Tensor | None) -> torch.Tensor:
        if items is None:
            items = torch.arange(self.n_items, device=self.items.weight.device)
        parts = [self.items(items)] + ([self.item_proj(self.item_x[items])] if self.item_proj else [])
        out = self.item_mlp(torch.cat(parts, dim=-1))
        return unit_rows(out) if self.measure == "cosine" else out

    def cold_user_vectors(self, features: torch.Tensor | None,
                          histories: list[list[int]]) -> torch.Tensor:
        """Vectors of users unseen in training, from side features and known items only.

        The id part is the mean of the trained users' id embeddings (the expected id vector of a
        user the model knows nothing about).

        Args:
            features: [n, F_u] encoded side features (None when the model has none).
            histories: per new user, the item indices they interacted with (may be empty).

        Returns:
            [n, dim] user vectors.
        """
        n = len(histories)
        width = max(1, max((len(h) for h in histories), default=1))
        items = torch.zeros((n, width), dtype=torch.int64)
        mask = torch.zeros((n, width), dtype=torch.bool)
        for r, h in enumerate(histories):
            items[r, :len(h)] = torch.as_tensor(h, dtype=torch.int64)
            mask[r, :len(h)] = True
        x = features if features is not None else torch.zeros((n, self.n_user_features))
        ids = self.users.weight.mean(0).expand(n, -1)
        return self._user_tower(ids, x, self._history_mean(items, mask))
