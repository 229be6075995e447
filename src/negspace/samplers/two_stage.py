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

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from negspace.data.interactions import Interactions
from negspace.errors import NegspaceError
from negspace.samplers.base import NegativeSampler, to_tensor
from negspace.samplers.popularity import PopularitySampler, popularity_weights
from negspace.samplers import two_stage_fast as fast

# The released code adds log(B(1/2, (d-1)/2)^-1)-like constant and 1e-8 inside the log; kept to
# reproduce exactly when its float32 exp() overflows.
_RELEASED_LOG_CONST = math.log(0.2228655673209082014292)
_FLOAT32_LOG_MAX = math.log(torch.finfo(torch.float32).max)
_BLOCK = 32  # candidates per block of the two-level inverse CDF
_WITHIN_STEPS = (16, 8, 4, 2, 1)  # binary search in a block: counts up to _BLOCK - 1
_NEG_TINY = -(2.0 ** -149)  # s > _NEG_TINY  <=>  s >= 0 (the smallest float32 denormal)
_EXCLUDED = -2.0  # similarity written over the user's positives and the padding (s >= -1 otherwise)
_EXCLUDED_BELOW = -1.5
_LOG_FLOOR = -80.0  # floor of log(weight / row maximum) on the fast path: keeps exp() off denormals
_STAGE1_ROUNDS = 6
_IID_ROUNDS = 3
_MAX_DRAWS = 64  # i.i.d. draws per row and round
_RENORM_BELOW = 2.0 ** -60  # remaining row mass (relative to the row maximum 1) below which the
#                             exact path recomputes a row's weights
_ONE = torch.ones(())


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


def _upper(cap: float | None) -> float:
    return 1.0 - 1e-6 if cap is None else min(cap, 1.0 - 1e-6)


def _pseudo_weights(s: torch.Tensor, w: torch.Tensor, k: float, hi: float) -> torch.Tensor:
    """w = exp(max(log w(max(s, 0)) - max_row log w, -80)) in float32, from similarities s where
    the inadmissible entries are negative, in five passes without temporaries of the buffer's size.
    Returns the row maxima of log w(s), [rows, 1].

    Inadmissible entries (s < 0, a user's positive, padding) get the pseudo-weight of s = 0
    instead of 0, and the floor at exp(-80) keeps every value a normal float: log() and exp() leave
    their vectorised path on zeros, infinities and denormals (10 to 40 times slower here). Callers
    reject draws that land on inadmissible entries, or zero them; the floor (applied only when a
    row spans more than 80 nats) raises admissible weights below exp(-80) of the row maximum.
    """
    smax = s.amax(dim=1, keepdim=True).clamp_(0.0, hi)  # weights increase with s on [0, 1)
    m = torch.addcmul(_ONE, smax, smax, value=-1.0).log_().mul_(-k)  # row max of log w
    torch.clamp(s, 0.0, hi, out=w)
    torch.addcmul(_ONE, w, w, value=-1.0, out=w)  # 1 - s^2 in [1 - hi^2, 1]
    w.log_()
    torch.add(-m, w, alpha=-k, out=w)  # log w - max_row log w, <= 0
    if float(m.max()) > -_LOG_FLOOR:
        w.clamp_(min=_LOG_FLOOR)
    w.exp_()
    return m


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
        compiled: stage 1 and, where the weights are flat enough, stage 2 as the numba loops of
            samplers/two_stage_fast.py (None: when numba is installed); the same law, other draws.
    """

    name = "two-stage"
    needs_model = True

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

    def _get_buffers(self, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Two reused [rows, cols] float32 buffers (allocating 30 MB a batch costs page faults)."""
        if self._buffer.numel() < 2 * rows * cols:
            self._buffer = torch.empty(2 * rows * cols)
        size = rows * cols
        return (self._buffer[:size].view(rows, cols), self._buffer[size:2 * size].view(rows, cols))

    def _iid_rounds(self, s: torch.Tensor, w: torch.Tensor, n: int,
                    fallback_row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Successive sampling as the first distinct admissible values of an i.i.d. stream.

        Draws i.i.d. from the pseudo-weights w by inverse CDF on two levels: a block of 32 by
        binary search in the row's float64 block offsets (cumulative float32 block sums), then a
        candidate by binary search in the float64 prefix sums of that block's 32 weights, scaled
        to the block's float32 sum. Draws that are inadmissible (s < 0, a user's positive) or
        repeat an earlier one are dropped: what is kept, in order, is successive sampling without
        replacement over the admissible weights. Rows still short after a few rounds (very peaked
        rows, or rows with little admissible mass) are left to the exact path. In the released
        fallback rows (`fallback_row`) every candidate with a positive weight is admissible.

        Rounding: candidate i of block b is drawn with probability proportional to
        w_i * S_b / S'_b, S_b the float32 sum of the block and S'_b its exact sum; |S_b / S'_b - 1|
        is at most 31 * 2^-24 whatever the summation order, so every draw, and every conditional
        distribution of a later draw, is within total variation 62 * 2^-24 < 3.7e-6 of the exact
        one over the float32 weights.
        """
        n_rows, width = s.shape
        n_blocks = width // _BLOCK
        sums = w.view(n_rows, n_blocks, _BLOCK).sum(dim=2).double().numpy()
        # float64 start of each block, then the total: offsets[j, row]
        offsets = np.zeros((n_blocks + 1, n_rows))
        offsets[1:] = sums.T
        _running_sum_(offsets)
        offsets_flat, sums_flat, s_flat = offsets.ravel(), sums.ravel(), s.view(-1).numpy()
        w_blocks = w.view(n_rows * n_blocks, _BLOCK)
        block_steps = _steps(n_blocks)
        has_fallback = bool(fallback_row.any())
        picks = np.full((n_rows, n), -1, np.int64)
        n_have = np.zeros(n_rows, np.int64)
        drawn = np.zeros(n_rows, np.int64)
        rows = np.arange(n_rows)
        m = n + max(1, n // 2)
        for rnd in range(_IID_ROUNDS):
            need = n - n_have[rows]
            if rnd:  # size the round by the acceptance seen so far (a Beta(1, 1) prior)
                rate = (n_have[rows] + 1) / (drawn[rows] + 2)
                m = int(min(np.max(np.ceil((need + 1) / rate)), _MAX_DRAWS))
            col = rows[:, None]
            x = self.rng.random((len(rows), m))
            x *= offsets_flat.take(n_blocks * n_rows + col)
            # block: the number of block starts after the first that are <= x (binary search)
            b = np.zeros(x.shape, np.int64)
            for step in block_steps:  # probes stop at offsets[n_blocks], the total, > x
                probe = np.minimum(b + step, n_blocks)
                b += step * (offsets_flat.take(probe * n_rows + col) <= x)
            np.minimum(b, n_blocks - 1, out=b)  # x rounded up onto the total
            block = (col * n_blocks + b).ravel()
            x = (x - offsets_flat.take(b * n_rows + col)).ravel() / sums_flat.take(block)
            # candidate: binary search in the block's float64 prefix sums, prefix[j, draw]
            n_draws = len(block)
            prefix = w_blocks.index_select(0, to_tensor(block)).cumsum(1, dtype=torch.float64)
            prefix = prefix.numpy()
            x *= prefix[:, -1]
            prefix_flat = prefix.ravel()
            at = np.arange(0, n_draws * _BLOCK, _BLOCK)
            first = at.copy()
            for step in _WITHIN_STEPS:  # the number of prefix sums <= x, at most 31
                at += step * (prefix_flat.take(at + (step - 1)) <= x)
            j = (at - first).reshape(b.shape)
            seq = b * _BLOCK + j
            ok = s_flat.take(col * width + seq) >= 0
            if has_fallback:
                ok |= fallback_row[col]
            ok &= (prefix[:, -1] > 0).reshape(b.shape)  # x rounded onto an empty last block
            for d in range(1, m if n > 1 else 1):  # drop repeats of an earlier draw of the row
                ok[:, d:] &= seq[:, d:] != seq[:, :-d]
            if rnd:
                have = picks[rows]
                for c in range(n):
                    ok &= seq != have[:, c:c + 1]
            count = np.cumsum(ok, axis=1)
            take = ok & (count <= need[:, None])
            ri, mi = np.nonzero(take)
            picks[rows[ri], n_have[rows[ri]] + count[ri, mi] - 1] = seq[ri, mi]
            n_have[rows] += np.minimum(count[:, -1], need)
            drawn[rows] += m
            rows = rows[n_have[rows] < n]
            if not len(rows):
                break
        return picks, n_have

    def _exact_rows(self, rows: np.ndarray, picks: np.ndarray, n_have: np.ndarray, n: int,
                    ctx: "_Context") -> None:
        """Finishes `rows` exactly: weights recomputed relative to the largest admissible one not
        drawn yet, exact zeros for the inadmissible and drawn candidates, float64 block sums, then
        one draw at a time, zeroing each drawn weight and recomputing its block's sum."""
        width = ctx.s.shape[1]
        sub = picks[rows].copy()
        filled = n_have[rows].copy()
        w = torch.zeros((len(rows), width))
        block_sums = np.zeros((len(rows), width // _BLOCK))
        local = np.arange(len(rows))
        self._exact_weights(w, block_sums, local, rows, sub, ctx)
        blocks = w.view(len(rows), -1, _BLOCK)
        short: list[np.ndarray] = []
        live = local
        for _ in range(n):
            live = live[filled[live] < n]
            if not len(live):
                break
            sums = block_sums[live]
            total = sums.sum(axis=1)
            low = ~(total >= _RENORM_BELOW)
            if low.any():
                lr = live[low]
                self._exact_weights(w, block_sums, lr, rows[lr], sub[lr], ctx)
                sums[low] = block_sums[lr]
                total[low] = sums[low].sum(axis=1)
                empty = total <= 0
                if empty.any():
                    short.append(live[empty])
                    live, sums, total = live[~empty], sums[~empty], total[~empty]
                if not len(live):
                    break
            idx = np.arange(len(live))
            cum = np.cumsum(sums, axis=1)
            x = self.rng.random(len(live)) * total
            b = (cum <= x[:, None]).sum(axis=1)
            over = b >= sums.shape[1]  # x rounded onto the total: the last block with mass
            if over.any():
                b[over] = sums.shape[1] - 1 - np.argmax(sums[over, ::-1] > 0, axis=1)
            frac = np.clip((x - cum[idx, b] + sums[idx, b]) / sums[idx, b], 0.0, 1.0)
            lt, bt = to_tensor(live), to_tensor(b)
            blk = blocks[lt, bt].numpy().astype(np.float64)
            cs = np.cumsum(blk, axis=1)
            i = (cs <= (frac * cs[:, -1])[:, None]).sum(axis=1)
            over = i >= _BLOCK
            if over.any():
                i[over] = _BLOCK - 1 - np.argmax(blk[over, ::-1] > 0, axis=1)
            sub[live, filled[live]] = b * _BLOCK + i
            filled[live] += 1
            blocks[lt, bt, to_tensor(i)] = 0.0
            blk[idx, i] = 0.0
            block_sums[live, b] = blk.sum(axis=1)
        if short:
            self._complete_uniform(sub, np.concatenate(short), rows, ctx)
        picks[rows] = sub

    def _exact_weights(self, w: torch.Tensor, block_sums: np.ndarray, local: np.ndarray,
                       rows: np.ndarray, chosen: np.ndarray, ctx: "_Context") -> None:
        """Writes into w[local] the weights of batch rows `rows` relative to their largest
        admissible one, with exact zeros for the user's positives, the `chosen` slots (-1 = none),
        s < 0 and padding, and their block sums into block_sums[local] (float32 sums of 32
        weights: relative error below 31 * 2^-24 of the block's own mass)."""
        width = w.shape[1]
        s = ctx.s[to_tensor(rows)]  # the batch's similarities, inadmissible entries < 0
        r, c = np.nonzero(chosen >= 0)
        s.view(-1).index_fill_(0, to_tensor(r * width + chosen[r, c]), _EXCLUDED)
        weights = torch.empty_like(s)
        fb = ctx.fallback_row[rows]
        nf = np.flatnonzero(~fb)
        if fb.any():  # released fallback rows: every candidate but the excluded ones is admissible
            fbt = to_tensor(np.flatnonzero(fb))
            s[fbt] = (s[fbt] > _EXCLUDED_BELOW).float().sub_(1.0).mul_(-_EXCLUDED)  # 0 or -2
        if len(nf) == len(rows):
            _pseudo_weights(s, weights, ctx.k, ctx.hi)
        elif len(nf):
            part = torch.empty((len(nf), width))
            _pseudo_weights(s[to_tensor(nf)], part, ctx.k, ctx.hi)
            weights[to_tensor(nf)] = part
        F.threshold_(s, _NEG_TINY, -1.0)  # inadmissible: -1, admissible: s >= 0
        mask = s.add_(1.0).clamp_(0.0, 1.0)  # 0 or 1
        if fb.any():  # released fallback rows: equal weights over what is left
            weights[fbt] = 1.0
        weights.mul_(mask)
        w[to_tensor(local)] = weights
        block_sums[local] = weights.view(len(rows), -1, _BLOCK).sum(dim=2).double().numpy()

    def _complete_uniform(self, sub: np.ndarray, local: np.ndarray, rows: np.ndarray,
                          ctx: "_Context") -> None:
        """Rows without positive weight left: the remaining negatives uniformly, without
        replacement, among the candidates neither drawn nor positives of the user (the zero-weight
        ones), as the Gumbel keys -1e4 + g order them after every weighted candidate."""
        n = sub.shape[1]
        allowed_all = (ctx.s[to_tensor(rows[local]), :ctx.n_cand] > _EXCLUDED_BELOW).numpy()
        for allowed, r in zip(allowed_all, local):
            have = sub[r][sub[r] >= 0]
            allowed[have] = False
            pool = np.flatnonzero(allowed)
            extra = self.rng.choice(pool, size=min(n - len(have), len(pool)), replace=False)
            sub[r, len(have): len(have) + len(extra)] = extra

    def _blocked(self, users: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, slot) pairs where candidate `slot` is a training positive of the row's user.
        Walks the batch users' positives, or for large batches (more positives than half the data)
        the candidates' users, expanded to the batch rows of each user."""
        train = self.train
        indptr, indices = train.indptr, train.indices
        self._slot[cand] = np.arange(len(cand))
        self._is_cand[cand] = True
        try:
            starts = indptr.take(users).astype(np.int64)
            lengths = indptr.take(users + 1) - starts
            n_pos = int(lengths.sum())
            if n_pos * 2 <= train.nnz:
                ends = np.cumsum(lengths)
                flat = np.repeat(starts - (ends - lengths), lengths)
                flat += np.arange(n_pos, dtype=np.int64)
                items = indices.take(flat)
                hit = np.flatnonzero(self._is_cand.take(items))
                # the batch row of each hit (a take from the expanded rows: 5x a searchsorted)
                row = np.repeat(np.arange(len(users), dtype=np.int64), lengths)
                return row.take(hit), self._slot.take(items.take(hit))
            hits = np.flatnonzero(self._is_cand.take(indices))  # (user, candidate) pairs
            hit_users = self._nnz_user.take(hits)
            hit_slots = self._slot.take(indices.take(hits))
            order = np.argsort(users, kind="stable")  # the batch rows of each user
            per_user = np.bincount(users, minlength=train.n_users)
            first_row = np.cumsum(per_user) - per_user
            counts = per_user.take(hit_users)
            pair, pos = _expand(first_row.take(hit_users), counts, int(counts.sum()))
            return order.take(pos), hit_slots.take(pair)
        finally:
            self._slot[cand] = -1
            self._is_cand[cand] = False

    @staticmethod
    def _released_overflow(s: torch.Tensor, dim: int) -> torch.Tensor:
        """Rows where the released float32 weights overflow (any s > 0 with exp(log w) = inf).

        s is clamped to 1 first: float32 rounding puts an item's similarity to itself anywhere in
        1 +- 1e-7, and above 1 the released code's log() gives NaN instead of overflowing; which of
        the two happens is noise, the intended case (the positive itself) is an overflow. The test
        is monotone in s, so it may be given the row maxima.
        """
        sc = s.clamp(max=1.0)
        lw = (1.0 - (dim - 1) / 2.0) * torch.log(1.0 - sc * sc + 1e-8) + _RELEASED_LOG_CONST
        return ((lw > _FLOAT32_LOG_MAX) & (s > 0)).any(dim=1)

    def _fill_short_rows(self, users: np.ndarray, items: np.ndarray, out: np.ndarray,
                         bad: np.ndarray, n: int) -> np.ndarray:
        """Rows with fewer than n admissible candidates take the rest from the popularity sampler."""
        rows = np.flatnonzero(bad.any(axis=1))
        extra = self.fallback.sample(users[rows], items[rows], n)
        out = out.copy()
        out[rows] = np.where(bad[rows], extra, out[rows])
        return out

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


class _Context:
    """What the exact path recomputes rows from: the batch's similarities (inadmissible entries
    -2 or below 0), the number of real candidates, the released-fallback rows, k and the cap."""

    def __init__(self, s: torch.Tensor, n_cand: int, fallback_row: np.ndarray, k: float,
                 hi: float) -> None:
        self.s, self.n_cand, self.fallback_row, self.k, self.hi = s, n_cand, fallback_row, k, hi


def _unit(model: Any, v: torch.Tensor) -> torch.Tensor:
    """Unit vectors; CML on the sphere already returns them."""
    v = v.float()
    if getattr(model, "norm", None) == "sphere":
        return v
    return F.normalize(v, dim=-1)


def _alias_table(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias table for Pr(i) proportional to w[i] > 0 (Vose's construction, float64):
    draw i uniformly, keep it with probability prob[i], else take alias[i]."""
    n = len(w)
    scaled = w * (n / w.sum())
    prob = np.ones(n)
    alias = np.arange(n)
    small = np.flatnonzero(scaled < 1.0).tolist()
    large = np.flatnonzero(scaled >= 1.0).tolist()
    rest = scaled.tolist()
    while small and large:
        lo, hi = small.pop(), large.pop()
        prob[lo], alias[lo] = rest[lo], hi
        rest[hi] = (rest[hi] + rest[lo]) - 1.0
        (small if rest[hi] < 1.0 else large).append(hi)
    return prob, alias  # leftovers (rounding) keep probability 1


def _running_sum_(a: np.ndarray) -> np.ndarray:
    """In place cumulative sum along axis 0 (row after row: 3 to 6 times faster than np.cumsum,
    which does not vectorise short running sums)."""
    for i in range(1, len(a)):
        a[i] += a[i - 1]
    return a


def _steps(size: int) -> tuple[int, ...]:
    """Binary-search steps that count, among size + 1 sorted values whose first is 0, how many
    after the first are <= x: powers of two summing to at least size - 1."""
    top = 1
    while 2 * top <= size - 1:
        top *= 2
    steps = []
    while top:
        steps.append(top)
        top //= 2
    return tuple(steps) if size > 1 else ()


def _expand(starts: np.ndarray, lengths: np.ndarray, total: int) -> tuple[np.ndarray, np.ndarray]:
    """For segments [starts[r], starts[r] + lengths[r]): (r, position) for every position."""
    rows = np.repeat(np.arange(len(lengths)), lengths)
    offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return rows, np.arange(total, dtype=np.int64) + offsets
