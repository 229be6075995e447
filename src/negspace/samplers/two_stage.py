"""2-stage negative sampling (Tran et al., SIGIR 2019), exact and as released.

Stage 1 draws C candidates per batch by popularity^beta without replacement. Stage 2 draws, for
each row, N distinct negatives among the candidates with weight w(s) = (1 - s^2)^(-(d-3)/2) on
s = v_j . v_n in [0, 1) and 0 for s < 0: the inverse of the density of dot products between random
unit vectors (Wu et al., "Sampling Matters"), computed in log space because at d = 128 it spans
hundreds of orders of magnitude. The user's training positives are excluded exactly.

Both stages draw from the law of Gumbel-top-k over the log weights, that is successive sampling
without replacement (each draw proportional to the weights of what is left), computed without a
random number per candidate:

- Stage 1 keeps the first C distinct items of an i.i.d. popularity stream (alias method, O(1) per
  draw); if the popularity mass is so concentrated that repeats keep coming, Gumbel-top-k over
  the items not drawn yet finishes the same process.
- Stage 2 works on two reused [B, C] float32 buffers (so the sampler is not re-entrant): one
  matmul gives s, the user's positives and the padding are overwritten with -2, five elementwise
  passes give pseudo-weights exp(log w(max(s, 0)) - max_row log w), kept off the slow paths of
  log/exp (zeros, infinities, denormals) by giving inadmissible entries the weight of s = 0 and
  flooring at exp(-80). Each row then keeps the first N distinct admissible values of an i.i.d.
  stream drawn by two-level inverse CDF (a block of 32 by its float32 sum, then a candidate by
  the float64 prefix sums of the block); draws on inadmissible entries are rejected. Rows still
  short after a few rounds (very peaked rows) are finished by an exact path that recomputes
  their weights with exact zeros, draws one negative at a time and zeroes it, and recomputes the
  weights relative to the largest one left whenever the remaining mass falls below 2^-60; rows
  with no positive weight left take the rest uniformly among their zero-weight candidates, as
  the Gumbel keys -1e4 + g would, then popularity negatives.

Accuracy (relative to exact successive sampling over the float32 weights; nothing is truncated):
a block's float32 sum is within 31 * 2^-24 of its exact sum, so every draw, first or later, is
within total variation 62 * 2^-24 < 3.7e-6. The floor raises admissible weights below exp(-80)
of the row maximum: at most C * exp(-80) (< 4e-32 for C = 2000) of the mass on the fast path, and
at most C * exp(-80) / 2^-60 (< 5e-14) of the remaining mass on the exact path.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from negspace.data.interactions import Interactions
from negspace.errors import NegspaceError
from negspace.samplers.base import NegativeSampler, to_tensor
from negspace.samplers.popularity import PopularitySampler, popularity_weights
from negspace.samplers import two_stage_fast as fast
from negspace.samplers.two_stage_draw import (_BLOCK, _EXCLUDED, _STAGE1_ROUNDS, SecondStageDraws,
                                              _alias_table, _Context, _pseudo_weights, _upper)


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
    hi = _upper(cap)
    sc = s.clamp(0.0, hi)
    lw = (-(dim - 3) / 2.0 / temperature) * torch.log1p(-sc * sc)
    return lw.masked_fill(s < 0, float("-inf"))


class TwoStageSampler(SecondStageDraws, NegativeSampler):
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
        compiled: stage 1 and, where the weights are flat enough, stage 2 as the numba loops of
            samplers/two_stage_fast.py (None: when numba is installed); the same law, other draws.
    """

    name = "two-stage"
    reads_model = True

    def __init__(self, n_candidates: int = 2000, beta: float = 1.0, temperature: float = 1.0,
                 cap: float | None = None, released: bool = False, refresh_every: int = 1,
                 seed: int = 0, compiled: bool | None = None) -> None:
        super().__init__(seed)
        if compiled and not fast.AVAILABLE:
            raise NegspaceError("the compiled 2-stage draw needs numba: pip install numba")
        self.compiled = compiled
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
        self.fallback = PopularitySampler(beta=beta, seed=seed + 1)
        self._calls = 0
        self._cached_vectors: torch.Tensor | None = None
        self._buffer = torch.empty(0)
        self.last_fallback_rows = 0.0  # fraction of rows drawn uniformly (released mode)
        self.last_fallback_mask: np.ndarray | None = None

    # ----------------------------------------------------------------------------- fitting
    def _fit(self, train: Interactions) -> None:
        w = popularity_weights(train, self.beta)
        self.log_pop = np.full(train.n_items, -np.inf)
        self.log_pop[w > 0] = np.log(w[w > 0])
        self._weighted = np.flatnonzero(w > 0)
        self.n_weighted = len(self._weighted)
        self._alias_prob, self._alias = _alias_table(w[self._weighted])
        self.fallback.fit(train)
        self._slot = np.full(train.n_items, -1, np.int64)
        self._is_cand = np.zeros(train.n_items, bool)
        self._nnz_user = np.repeat(np.arange(train.n_users, dtype=np.int64), train.user_degrees())
        self._indptr64 = train.indptr.astype(np.int64)

    def _use_compiled(self) -> bool:
        return fast.AVAILABLE if self.compiled is None else self.compiled

    # ----------------------------------------------------------------------------- stage 1
    def candidates(self) -> np.ndarray:
        """Stage 1: C items without replacement, Pr proportional to f^beta (successive sampling)."""
        c = min(self.n_candidates, self.n_weighted)
        if c == self.n_weighted:
            return self._weighted.copy()
        # The first distinct items of the stream, in stream order, kept round by round: each
        # round's draws are deduplicated on their own and checked against a seen-flag per item
        # (re-sorting the whole stream every round cost 2 ms a batch on MovieLens-1M).
        if self._use_compiled():
            return self._candidates_compiled(c)
        seen = self._is_cand  # all False between calls (_blocked resets it too)
        parts: list[np.ndarray] = []
        n_distinct = n_drawn = 0
        size = c + c // 4 + 32
        try:
            for _ in range(_STAGE1_ROUNDS):
                u = self.rng.random(size) * self.n_weighted  # alias method: one uniform per draw
                slot = u.astype(np.int64)
                np.minimum(slot, self.n_weighted - 1, out=slot)
                u -= slot
                draws = np.where(u < self._alias_prob.take(slot), slot, self._alias.take(slot))
                chunk = self._weighted.take(draws)
                _, first = np.unique(chunk, return_index=True)
                new = chunk.take(np.sort(first))
                new = new[~seen.take(new)]
                seen[new] = True
                parts.append(new)
                n_distinct += len(new)
                n_drawn += size
                if n_distinct >= c:
                    return np.concatenate(parts)[:c]
                rate = max(n_distinct / n_drawn, 1e-3)  # distinct per draw so far (decreasing)
                size = int(1.5 * (c - n_distinct) / rate) + 64
        finally:
            for part in parts:
                seen[part] = False
        return self._finish_candidates(np.concatenate(parts), c)

    def _candidates_compiled(self, c: int) -> np.ndarray:
        """`candidates` as one compiled loop per round: the same uniforms, the same items in the
        same order (tests/samplers/test_two_stage_fast.py)."""
        seen, out = self._is_cand, np.empty(c, np.int64)
        n_have = n_drawn = 0
        size = c + c // 4 + 32
        try:
            for _ in range(_STAGE1_ROUNDS):
                n_have = fast.stage1(self.rng.random(size), self.n_weighted, self._alias_prob,
                                     self._alias, self._weighted, seen, out, n_have)
                n_drawn += size
                if n_have >= c:
                    return out
                rate = max(n_have / n_drawn, 1e-3)
                size = int(1.5 * (c - n_have) / rate) + 64
        finally:
            seen[out[:n_have]] = False
        return self._finish_candidates(out[:n_have], c)

    def _finish_candidates(self, chosen: np.ndarray, c: int) -> np.ndarray:
        """Concentrated popularity: finishes the same successive sampling exactly, Gumbel-top-k
        over the items not drawn yet."""
        keys = self.log_pop - np.log(self.rng.exponential(size=len(self.log_pop)))
        keys[chosen] = -np.inf
        rest = np.argpartition(-keys, c - len(chosen) - 1)[: c - len(chosen)]
        return np.concatenate([chosen, rest])

    # ----------------------------------------------------------------------------- vectors
    def _item_vectors(self, model: Any, items: np.ndarray) -> torch.Tensor:
        if self.refresh_every > 1:
            if self._cached_vectors is None or self._calls % self.refresh_every == 0:
                with torch.no_grad():
                    self._cached_vectors = _unit(model, model.item_vectors(None))
            return self._cached_vectors[to_tensor(items)]
        with torch.no_grad():
            return _unit(model, model.item_vectors(to_tensor(items)))

    # ----------------------------------------------------------------------------- stage 2
    def _sample(self, users: np.ndarray, items: np.ndarray, n: int, model: Any) -> np.ndarray:
        if model is None:
            raise RuntimeError("the two-stage sampler needs the model (its current item embeddings)")
        cand = self.candidates()
        n_rows, n_cand = len(users), len(cand)
        if n_rows == 0:
            return np.empty((0, n), np.int64)
        vecs = self._item_vectors(model, np.concatenate([items, cand]))
        self._calls += 1
        dim = vecs.shape[1]
        k = (dim - 3) / 2.0 / self.temperature
        hi = _upper(self.cap)
        log_env = fast.log_envelope(k, hi)
        if (self._use_compiled() and not self.released and log_env <= fast.MAX_LOG_ENVELOPE
                and vecs.device.type == "cpu"):
            return self._sample_rejection(users, items, cand, vecs, n, k, hi, log_env)
        width = -(-n_cand // _BLOCK) * _BLOCK
        pos_vecs = vecs[:n_rows]
        cand_vecs = vecs.new_zeros((width, dim))
        cand_vecs[:n_cand] = vecs[n_rows:]

        s, w = self._get_buffers(n_rows, width)
        torch.mm(pos_vecs, cand_vecs.T, out=s)
        fallback = np.empty(0, np.int64)
        if self.released:
            overflow = self._released_overflow(s.amax(dim=1, keepdim=True), dim)
            self.last_fallback_mask = overflow.numpy()
            self.last_fallback_rows = float(overflow.float().mean())
            fallback = np.flatnonzero(self.last_fallback_mask)
        if width > n_cand:
            s[:, n_cand:] = _EXCLUDED
        rows_b, slots_b = self._blocked(users, cand)
        blocked = to_tensor(rows_b * width + slots_b)
        s.view(-1).index_fill_(0, blocked, _EXCLUDED)
        _pseudo_weights(s, w, k, hi)
        if len(fallback):
            # the released fallback: equal weights over the candidates but the user's positives
            w[to_tensor(fallback)] = 1.0
            w.view(-1).index_fill_(0, blocked, 0.0)
        if width > n_cand:  # padding: weight 0 (exp() is done)
            w[:, n_cand:] = 0.0
        fb_row = np.zeros(n_rows, bool)
        fb_row[fallback] = True
        ctx = _Context(s, n_cand, fb_row, k, hi)

        picks, n_have = self._iid_rounds(s, w, n, fb_row)
        rest = np.flatnonzero(n_have < n)
        if len(rest):
            self._exact_rows(rest, picks, n_have, n, ctx)
        missing = picks < 0
        out = cand[np.where(missing, 0, picks)]
        if missing.any():
            out = self._fill_short_rows(users, items, out, missing, n)
        return out

    def _sample_rejection(self, users: np.ndarray, items: np.ndarray, cand: np.ndarray,
                          vecs: torch.Tensor, n: int, k: float, hi: float,
                          log_env: float) -> np.ndarray:
        """Stage 2 by rejection from a uniform proposal (samplers/two_stage_fast.py); rows that
        run out of proposals finish on the exact path from the negatives they have."""
        n_rows, n_cand = len(users), len(cand)
        v = vecs.contiguous().numpy()
        pos_vecs, cand_vecs = v[:n_rows], v[n_rows:]
        picks = np.full((n_rows, n), -1, np.int64)
        n_have = np.zeros(n_rows, np.int64)
        rest = np.arange(n_rows)
        for rnd in range(fast.ROUNDS):  # each round continues the rows still short
            u = self.rng.random((len(rest), fast.proposals_per_row(n, log_env)))
            if rnd == 0:
                fast.stage2(pos_vecs, cand_vecs, cand, users, self._indptr64, self.train.indices,
                            k, hi, log_env, u, picks, n_have)
            else:
                sub, sub_have = picks[rest], n_have[rest]
                fast.stage2(pos_vecs[rest], cand_vecs, cand, users[rest], self._indptr64,
                            self.train.indices, k, hi, log_env, u, sub, sub_have)
                picks[rest], n_have[rest] = sub, sub_have
            rest = rest[n_have[rest] < n]
            if not len(rest):
                break
        if len(rest):
            width = -(-n_cand // _BLOCK) * _BLOCK
            s = torch.full((len(rest), width), _EXCLUDED)
            s[:, :n_cand] = vecs[to_tensor(rest)] @ vecs[n_rows:].T
            rows_b, slots_b = self._blocked(users[rest], cand)
            s.view(-1).index_fill_(0, to_tensor(rows_b * width + slots_b), _EXCLUDED)
            ctx = _Context(s, n_cand, np.zeros(len(rest), bool), k, hi)
            sub, sub_have = picks[rest], n_have[rest]
            self._exact_rows(np.arange(len(rest)), sub, sub_have, n, ctx)
            picks[rest] = sub
        missing = picks < 0
        out = cand[np.where(missing, 0, picks)]
        if missing.any():
            out = self._fill_short_rows(users, items, out, missing, n)
        return out

    def epoch_notes(self) -> dict[str, float]:
        # the released variant's share of rows that fell back to uniform (float32 overflow)
        return {"fallback_rows": self.last_fallback_rows} if self.released else {}

    @property
    def has_device_law(self) -> bool:
        return not self.released  # its fallback reproduces float32 overflows of the host code

    def state_dict(self) -> dict:
        # The cached item vectors (refresh_every > 1) are the memory bank the next batches read:
        # recomputing them from the current model would change the draws. The buffers are scratch.
        return {**super().state_dict(), "calls": self._calls, "fallback": self.fallback.state_dict(),
                "cached_vectors": self._cached_vectors, "last_fallback_rows": self.last_fallback_rows}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._calls = state["calls"]
        cached = state.get("cached_vectors")
        self._cached_vectors = None if cached is None else cached.clone()
        self.last_fallback_rows = state.get("last_fallback_rows", 0.0)
        self.fallback.load_state_dict(state["fallback"])


def _unit(model: Any, v: torch.Tensor) -> torch.Tensor:
    """Unit vectors; CML on the sphere already returns them."""
    v = v.float()
    if getattr(model, "norm", None) == "sphere":
        return v
    return F.normalize(v, dim=-1)

