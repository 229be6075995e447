"""The second stage of the 2-stage sampler (samplers/two_stage.py): n negatives drawn without
replacement from each row's candidates in proportion to the inverse-density weights, vectorised
over the batch."""

from __future__ import annotations

import math
import numpy as np
import torch
import torch.nn.functional as F

from negspace.samplers.base import to_tensor


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


class SecondStageDraws:
    """The second stage of TwoStageSampler: the weighted draw without replacement over each
    row's candidates (i.i.d. rounds on the fast path, the exact block-wise draw for the rows
    they leave short). A mixin: the sampler holds the generator, the buffers and the options."""

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

class _Context:
    """What the exact path recomputes rows from: the batch's similarities (inadmissible entries
    -2 or below 0), the number of real candidates, the released-fallback rows, k and the cap."""

    def __init__(self, s: torch.Tensor, n_cand: int, fallback_row: np.ndarray, k: float,
                 hi: float) -> None:
        self.s, self.n_cand, self.fallback_row, self.k, self.hi = s, n_cand, fallback_row, k, hi


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
