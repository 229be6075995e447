"""2-stage negative sampling (Tran et al., SIGIR 2019), exact and as released.

Stage 1 draws C candidates per batch by popularity^beta without replacement. Stage 2 draws, for
each row, N distinct negatives among the candidates with weight w(s) = (1 - s^2)^(-(d-3)/2) on
s = v_j . v_n in [0, 1) and 0 for s < 0: the inverse of the density of dot products between random
unit vectors (Wu et al., "Sampling Matters"), computed in log space because at d = 128 it spans
hundreds of orders of magnitude.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from negspace.data.interactions import Interactions
from negspace.errors import NegspaceError
from negspace.samplers.base import NegativeSampler, to_tensor
from negspace.samplers.popularity import PopularitySampler, popularity_weights

# The released code adds log(B(1/2, (d-1)/2)^-1)-like constant and 1e-8 inside the log; kept to
# reproduce exactly when its float32 exp() overflows.
_RELEASED_LOG_CONST = math.log(0.2228655673209082014292)
_FLOAT32_LOG_MAX = math.log(torch.finfo(torch.float32).max)
_ZERO_WEIGHT_OFFSET = 1.0e4  # keys of zero-weight candidates sit this far below any weighted key


def spread_out_log_weights(s: torch.Tensor, dim: int, cap: float | None = None,
                           temperature: float = 1.0) -> torch.Tensor:
    """log w(s) = -(d-3)/2 * log(1 - s^2) for 0 <= s < 1, -inf for s < 0.

    Args:
        s: cosine similarities.
        dim: embedding dimension d.
        cap: optional maximum similarity; weights above w(cap) are capped (Wu et al.'s distance
            cut-off: on the unit sphere a distance floor of 0.5 is cap = 0.875).
        temperature: divides the log weights (> 1 softens the distribution).

    Returns:
        Log weights, >= 0 where s >= 0.
    """
    hi = 1.0 - 1e-6 if cap is None else min(cap, 1.0 - 1e-6)
    sc = s.clamp(0.0, hi)
    lw = (-(dim - 3) / 2.0 / temperature) * torch.log1p(-sc * sc)
    return lw.masked_fill(s < 0, float("-inf"))


class TwoStageSampler(NegativeSampler):
    """Args:
        n_candidates: C, candidates per batch (2000 in the paper).
        beta: popularity exponent of stage 1.
        temperature: softens stage 2's log weights (1 = the exact maths).
        cap: optional similarity cap on stage 2's weights (None = the exact maths).
        released: reproduce the released code: a row whose largest float32 weight (the user's
            positives included) overflows falls back to a uniform draw among the candidates.
        refresh_every: read the item embeddings afresh every this many batches (the released
            code uses 100; 1 = always current).
        seed: random seed.
    """

    name = "two-stage"
    needs_model = True

    def __init__(self, n_candidates: int = 2000, beta: float = 1.0, temperature: float = 1.0,
                 cap: float | None = None, released: bool = False, refresh_every: int = 1,
                 seed: int = 0) -> None:
        super().__init__(seed)
        if n_candidates < 1:
            raise NegspaceError(f"n_candidates must be >= 1, got {n_candidates}")
        if temperature <= 0:
            raise NegspaceError(f"two-stage temperature must be > 0, got {temperature}")
        if cap is not None and not 0.0 < cap < 1.0:
            raise NegspaceError(f"two-stage cap must be in (0, 1), got {cap}")
        if refresh_every < 1:
            raise NegspaceError(f"refresh_every must be >= 1, got {refresh_every}")
        self.n_candidates = n_candidates
        self.beta = beta
        self.temperature = temperature
        self.cap = cap
        self.released = released
        self.refresh_every = refresh_every
        self.gen = torch.Generator().manual_seed(int(seed))
        self.fallback = PopularitySampler(beta=beta, seed=seed + 1)
        self._calls = 0
        self._cached_vectors: torch.Tensor | None = None
        self.last_fallback_rows = 0.0  # fraction of rows drawn uniformly (released mode)
        self.last_fallback_mask: np.ndarray | None = None

    def _fit(self, train: Interactions) -> None:
        w = popularity_weights(train, self.beta)
        self.log_pop = np.full(train.n_items, -np.inf)
        self.log_pop[w > 0] = np.log(w[w > 0])
        self.n_weighted = int((w > 0).sum())
        self.fallback.fit(train)
        self._slot = np.full(train.n_items, -1, np.int64)

    def candidates(self) -> np.ndarray:
        """Stage 1: C items without replacement, Pr proportional to f^beta (Gumbel top-C)."""
        c = min(self.n_candidates, self.n_weighted)
        keys = self.log_pop - np.log(self.rng.exponential(size=len(self.log_pop)))
        return np.argpartition(-keys, c - 1)[:c]

    def _item_vectors(self, model: Any, items: np.ndarray) -> torch.Tensor:
        if self.refresh_every > 1:
            if self._cached_vectors is None or self._calls % self.refresh_every == 0:
                with torch.no_grad():
                    self._cached_vectors = F.normalize(model.item_vectors(None).float(), dim=-1)
            return self._cached_vectors[to_tensor(items)]
        with torch.no_grad():
            return F.normalize(model.item_vectors(to_tensor(items)).float(), dim=-1)

    def _sample(self, users: np.ndarray, items: np.ndarray, n: int, model: Any) -> np.ndarray:
        if model is None:
            raise RuntimeError("the two-stage sampler needs the model (its current item embeddings)")
        cand = self.candidates()
        vecs = self._item_vectors(model, np.concatenate([items, cand]))
        self._calls += 1
        pos_vecs, cand_vecs = vecs[: len(items)], vecs[len(items):]
        s = pos_vecs @ cand_vecs.T  # [B, C]
        dim = pos_vecs.shape[1]
        blocked = self._positive_mask(users, cand)  # [B, C] user's positives among candidates
        lw = spread_out_log_weights(s, dim, self.cap, self.temperature)
        if self.released:
            overflow = self._released_overflow(s, dim)
            lw[overflow] = 0.0  # equal weights: a uniform draw among the candidates
            self.last_fallback_mask = overflow.numpy()
            self.last_fallback_rows = float(overflow.float().mean())
        gumbel = -torch.log(torch.empty_like(s).exponential_(generator=self.gen))
        # Zero-weight candidates (s < 0) come after every weighted one, in random order.
        keys = torch.where(torch.isfinite(lw), lw, lw.new_tensor(-_ZERO_WEIGHT_OFFSET)) + gumbel
        keys.masked_fill_(blocked, float("-inf"))
        top_keys, top = torch.topk(keys, min(n, keys.shape[1]), dim=1)
        out = cand[top.numpy()]
        if out.shape[1] < n or not bool(torch.isfinite(top_keys).all()):
            out = self._fill_short_rows(users, items, out, top_keys.numpy(), n)
        return out

    def _positive_mask(self, users: np.ndarray, cand: np.ndarray) -> torch.Tensor:
        """[B, C] true where the candidate is one of the row user's training positives."""
        self._slot[cand] = np.arange(len(cand))
        indptr, indices = self.train.indptr, self.train.indices
        starts, ends = indptr[users], indptr[users + 1]
        lengths = ends - starts
        rows = np.repeat(np.arange(len(users)), lengths)
        flat = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths) \
            + np.repeat(starts, lengths)
        slots = self._slot[indices[flat]]
        self._slot[cand] = -1
        hit = slots >= 0
        mask = torch.zeros((len(users), len(cand)), dtype=torch.bool)
        mask[to_tensor(rows[hit]), to_tensor(slots[hit])] = True
        return mask

    @staticmethod
    def _released_overflow(s: torch.Tensor, dim: int) -> torch.Tensor:
        """Rows where the released float32 weights overflow (any s > 0 with exp(log w) = inf).

        s is clamped to 1 first: float32 rounding puts an item's similarity to itself anywhere in
        1 +- 1e-7, and above 1 the released code's log() gives NaN instead of overflowing; which of
        the two happens is noise, the intended case (the positive itself) is an overflow.
        """
        sc = s.clamp(max=1.0)
        lw = (1.0 - (dim - 1) / 2.0) * torch.log(1.0 - sc * sc + 1e-8) + _RELEASED_LOG_CONST
        return ((lw > _FLOAT32_LOG_MAX) & (s > 0)).any(dim=1)

    def _fill_short_rows(self, users: np.ndarray, items: np.ndarray, out: np.ndarray,
                         keys: np.ndarray, n: int) -> np.ndarray:
        """Rows with fewer than n admissible candidates take the rest from the popularity sampler."""
        full = np.empty((len(users), n), np.int64)
        full[:, : out.shape[1]] = out
        bad = np.zeros((len(users), n), bool)
        bad[:, : out.shape[1]] = ~np.isfinite(keys)
        bad[:, out.shape[1]:] = True
        rows = np.flatnonzero(bad.any(axis=1))
        extra = self.fallback.sample(users[rows], items[rows], n)
        full[rows] = np.where(bad[rows], extra, full[rows])
        return full

    def state_dict(self) -> dict:
        return {**super().state_dict(), "gen": self.gen.get_state(), "calls": self._calls,
                "fallback": self.fallback.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.gen.set_state(state["gen"])
        self._calls = state["calls"]
        self._cached_vectors = None
        self.fallback.load_state_dict(state["fallback"])
