"""Uniform negatives over the items the user has not interacted with."""

from __future__ import annotations

from typing import Any

import numpy as np

from negspace.data.interactions import Interactions
from negspace.samplers.base import ComplementIndex, NegativeSampler


class UniformSampler(NegativeSampler):
    """Each negative is uniform over the user's non-positive items (drawn directly from the
    complement, so no rejection is needed and exclusion is exact by construction)."""

    name = "uniform"

    def _fit(self, train: Interactions) -> None:
        self.complement = ComplementIndex(train)

    def _sample(self, users: np.ndarray, items: np.ndarray, n: int, model: Any) -> np.ndarray:
        free = self.complement.n_free[users][:, None]
        r = np.floor(self.rng.random((len(users), n)) * free).astype(np.int64)
        r = np.minimum(r, free - 1)  # guards the 1 - 2^-53 rounding edge
        return self.complement.lookup(users[:, None], r)
