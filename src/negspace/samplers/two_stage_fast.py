"""Compiled (numba) paths of the 2-stage sampler: stage 1's alias stream and stage 2 by rejection
from a uniform proposal, where the weights are flat enough for it (the softened settings that
train well, e.g. temperature 64 with the cap 0.875: weights within a factor 2 of each other).

Stage 2 by rejection. Successive sampling without replacement over the admissible weights w_j
(w(s) increasing in s, capped at w(hi); 0 for s < 0 and for the user's positives) is drawn one
negative at a time: propose a slot j uniformly among the C candidates, accept it with probability
w_j / w(hi) unless it was drawn already. An accepted slot is an exact draw from the remaining
law, and whether a draw is accepted within the budget is independent of which slot it is, so a
row that runs out of its budget of proposals can finish on the exact path (two_stage.py) from the
negatives it has, and the mixture is still exactly successive sampling. Only the proposed slots'
similarities are computed: O(proposals x d) per row instead of the [B, C] product, its weights and
their prefix sums (9.5 ms a batch at B = 256, C = 2,000 on MovieLens-1M, docs/performance.md).

Random numbers come from the sampler's numpy generator (drawn before the kernel runs), so the
draws are seeded and part of its state like the rest; they differ from the torch path's draws, not
in law (tests/samplers/test_two_stage_fast.py compares both with the exact probabilities).
"""

from __future__ import annotations

import math

import numpy as np

from negspace.compiled import numba

AVAILABLE = numba is not None
# Rejection is used where log w(hi) - log w(0) is at most this (acceptance >= admissible share
# times exp(-4)); above it (the exact maths at temperature 1: about 400 nats) the torch path runs.
MAX_LOG_ENVELOPE = 4.0


def log_envelope(k: float, hi: float) -> float:
    """log w(hi) - log w(0) = -k log(1 - hi^2): the spread of the capped weights."""
    return -k * math.log1p(-hi * hi)


ROUNDS = 3  # rounds of proposals for the rows still short, before the exact path


def proposals_per_row(n: int, log_env: float) -> int:
    """Proposals per row and round: about 4 to 8 times the expected number at half the
    candidates admissible (users holding many of the candidates need more rounds)."""
    return int((4 * n + 16) * math.ceil(math.exp(log_env)))


def _stage1(u, n_weighted, alias_prob, alias, weighted, seen, out, n_have):  # pragma: no cover
    """Alias draws from the uniforms u; appends to out[n_have:] the items not seen yet, in stream
    order, marking them seen, until out is full. Returns the new n_have."""
    c = out.shape[0]
    for t in range(u.shape[0]):
        if n_have == c:
            break
        x = u[t] * n_weighted
        slot = min(int(x), n_weighted - 1)
        item = weighted[slot] if x - slot < alias_prob[slot] else weighted[alias[slot]]
        if not seen[item]:
            seen[item] = True
            out[n_have] = item
            n_have += 1
    return n_have


def _is_positive(indices, start, end, item):  # pragma: no cover -- compiled
    lo, hi = start, end
    while lo < hi:
        mid = (lo + hi) // 2
        if indices[mid] < item:
            lo = mid + 1
        else:
            hi = mid
    return lo < end and indices[lo] == item


def _stage2(pos_vecs, cand_vecs, cand, users, indptr, indices, k, hi, log_env, u,
            picks, n_have):  # pragma: no cover -- compiled; tested through its law
    """Rejection draws for every row, one uniform per proposal (its integer part picks the slot,
    its fraction decides acceptance), continuing from the n_have[i] negatives a row already has.
    Fills picks [B, N] (slots) and n_have [B]."""
    n_rows, n = picks.shape
    n_cand, dim = cand_vecs.shape
    budget = u.shape[1]
    for i in range(n_rows):
        have = n_have[i]
        start, end = indptr[users[i]], indptr[users[i] + 1]
        for t in range(budget):
            if have == n:
                break
            x = u[i, t] * n_cand
            j = min(int(x), n_cand - 1)
            a = x - j
            repeat = False
            for q in range(have):
                if picks[i, q] == j:
                    repeat = True
            if repeat:
                continue
            s = np.float32(0.0)
            for e in range(dim):
                s += pos_vecs[i, e] * cand_vecs[j, e]
            if s < 0:
                continue
            if _is_positive(indices, start, end, cand[j]):
                continue
            sc = min(np.float64(s), hi)
            if a < math.exp(-k * math.log1p(-sc * sc) - log_env):
                picks[i, have] = j
                have += 1
        n_have[i] = have


if AVAILABLE:
    # no approximate functions (exp and log1p stay exact); only sums may be reordered
    _jit = numba.njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract", "nsz"})
    _is_positive = _jit(_is_positive)
    stage1 = _jit(_stage1)
    stage2 = _jit(_stage2)
