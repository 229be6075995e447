"""Negatives drawn with Pr(j) proportional to f(j)^beta, f = training interaction count."""

from __future__ import annotations

from typing import Any

import numpy as np

from negspace.data.interactions import Interactions
from negspace.errors import NegspaceError
from negspace.samplers.base import ComplementIndex, NegativeSampler

_MAX_REJECTION_ROUNDS = 16


def popularity_weights(train: Interactions, beta: float) -> np.ndarray:
    """f(j)^beta, with zero weight for items never seen in training (0^beta is undefined for beta <= 0)."""
    counts = train.item_counts().astype(np.float64)
    w = np.zeros_like(counts)
    seen = counts > 0
    w[seen] = counts[seen] ** beta
    return w


class PopularitySampler(NegativeSampler):
    """Popularity-weighted negatives, conditioned exactly on not being a positive of the user.

    Draws by inverse CDF and redraws the entries that hit a positive (rejection sampling gives the
    exact conditional distribution). Rows still unresolved after a few rounds, which happens only
    for users whose positives hold most of the mass, are drawn from their own renormalised CDF.
    A user whose positives hold all the mass gets uniform negatives over its non-positive items.

    Args:
        beta: exponent on the counts (1.0 Amazon/Echonest, 0.8 Book-Crossing in the paper).
    """

    name = "popularity"

    def __init__(self, beta: float = 1.0, seed: int = 0) -> None:
        super().__init__(seed)
        self.beta = float(beta)

    def _fit(self, train: Interactions) -> None:
        self.weights = popularity_weights(train, self.beta)
        total = self.weights.sum()
        if total <= 0:
            raise NegspaceError("popularity sampler: no item has a positive weight")
        self.cdf = np.cumsum(self.weights) / total
        # bincount, not add.reduceat: reduceat fails when the last users have no interactions
        users, _ = train.pairs()
        pos_mass = np.bincount(users, weights=self.weights[train.indices], minlength=train.n_users)
        self.no_mass = pos_mass >= total * (1 - 1e-12)
        self.complement = ComplementIndex(train)

    def _draw(self, size: tuple[int, ...] | int) -> np.ndarray:
        u = self.rng.random(size)
        return np.minimum(np.searchsorted(self.cdf, u, side="right"), len(self.cdf) - 1)

    def _sample(self, users: np.ndarray, items: np.ndarray, n: int, model: Any) -> np.ndarray:
        out = self._draw((len(users), n))
        bad = self.train.contains(users[:, None], out) | self.no_mass[users][:, None]
        for _ in range(_MAX_REJECTION_ROUNDS):
            rows, cols = np.nonzero(bad & ~self.no_mass[users][:, None])
            if len(rows) == 0:
                break
            redraw = self._draw(len(rows))
            out[rows, cols] = redraw
            bad[rows, cols] = self.train.contains(users[rows], redraw)
        for row in np.unique(np.nonzero(bad)[0]):
            cols = np.flatnonzero(bad[row])
            out[row, cols] = self._exact_row(users[row], len(cols))
        return out

    def _exact_row(self, user: int, size: int) -> np.ndarray:
        start, end = self.train.indptr[user], self.train.indptr[user + 1]
        if self.no_mass[user]:
            r = self.rng.integers(0, self.complement.n_free[user], size)
            return self.complement.lookup(np.full(size, user), r)
        w = self.weights.copy()
        w[self.train.indices[start:end]] = 0.0
        cdf = np.cumsum(w) / w.sum()
        return np.minimum(np.searchsorted(cdf, self.rng.random(size), side="right"), len(cdf) - 1)
