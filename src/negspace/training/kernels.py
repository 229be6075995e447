"""Compiled (numba) kernels of the hand-written CML step: loss, gradient and lazy Adam in loops
over the touched rows, with no intermediate tensors. numba is a default dependency; where it does
not import, training/fused.py runs the same step as torch operations.

The maths is CMLTripletStep.loss_and_grads's and RowAdam.update_rows's; the tests compare them
(tests/training/test_kernels.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from negspace.compiled import AVAILABLE, numba
from negspace.models.unit_rows import NORM_EPS  # F.normalize's floor (training/fused.py too)


def _unit(src, row, dst):  # pragma: no cover -- compiled
    """dst = src[row] / max(|src[row]|, eps); returns the floored norm."""
    d = src.shape[1]
    s = np.float32(0.0)
    for j in range(d):
        s += src[row, j] * src[row, j]
    r = max(np.float32(np.sqrt(s)), np.float32(NORM_EPS))
    for j in range(d):
        dst[j] = src[row, j] / r
    return r


def _dist2(a, b):  # pragma: no cover -- compiled
    s = np.float32(0.0)
    for j in range(a.shape[0]):
        t = a[j] - b[j]
        s += t * t
    return s


def _dot(a, b):  # pragma: no cover -- compiled
    s = np.float32(0.0)
    for j in range(a.shape[0]):
        s += a[j] * b[j]
    return s


def _unproject(g, v, r):  # pragma: no cover -- compiled
    """g <- (g - v (v . g)) / r: the gradient through v = raw / |raw|."""
    s = _dot(g, v)
    for j in range(g.shape[0]):
        g[j] = (g[j] - v[j] * s) / r


def _loss_and_grads(wu, wi, users, items, negs, margin, gor_weight, rank_n_items,
                    g_u, g_p, g_n):  # pragma: no cover -- compiled; tested through its results
    """Fills g_u [B, d], g_p [B, d], g_n [B, N, d] (gradients with respect to the raw rows);
    returns the loss. rank_n_items > 0 turns on the rank weight with that catalogue size."""
    b, n_neg = negs.shape
    d = wu.shape[1]
    u = np.empty((b, d), np.float32)
    p = np.empty((b, d), np.float32)
    n = np.empty((b, n_neg, d), np.float32)
    ru = np.empty(b, np.float32)
    rp = np.empty(b, np.float32)
    rn = np.empty((b, n_neg), np.float32)
    margin = np.float32(margin)
    loss = np.float32(0.0)
    g_u[:] = 0.0
    g_p[:] = 0.0
    g_n[:] = 0.0
    for i in range(b):
        ru[i] = _unit(wu, users[i], u[i])
        rp[i] = _unit(wi, items[i], p[i])
        for k in range(n_neg):
            rn[i, k] = _unit(wi, negs[i, k], n[i, k])
        d2p = _dist2(u[i], p[i])
        best, kbest, impostors = np.float32(np.inf), 0, 0
        for k in range(n_neg):
            d2 = _dist2(u[i], n[i, k])
            if d2 < best:
                best, kbest = d2, k
            if d2 < d2p + margin:
                impostors += 1
        hinge = d2p - best + margin
        if hinge <= 0:
            continue
        w = np.float32(1.0)
        if rank_n_items > 0:
            w = np.float32(np.log1p(np.floor(np.float32(rank_n_items * impostors) / n_neg)))
        loss += w * hinge
        w2 = 2 * w
        for j in range(d):
            dp = u[i, j] - p[i, j]
            dk = u[i, j] - n[i, kbest, j]
            g_u[i, j] = w2 * (dp - dk)
            g_p[i, j] = -w2 * dp
            g_n[i, kbest, j] = w2 * dk
    if gor_weight != 0:
        q = b * n_neg
        dots = np.empty((b, n_neg), np.float32)
        s1, s2 = np.float32(0.0), np.float32(0.0)
        for i in range(b):
            for k in range(n_neg):
                t = _dot(p[i], n[i, k])
                dots[i, k] = t
                s1 += t
                s2 += t * t
        m1, m2 = s1 / np.float32(q), s2 / np.float32(q)
        over = m2 - np.float32(1.0 / d)
        loss += np.float32(gor_weight) * (m1 * m1 + max(over, np.float32(0.0)))
        for i in range(b):
            for k in range(n_neg):
                c = 2 * m1 / np.float32(q)
                if over > 0:
                    c += dots[i, k] * np.float32(2.0 / q)
                c *= np.float32(gor_weight)
                for j in range(d):
                    g_p[i, j] += c * n[i, k, j]
                    g_n[i, k, j] += c * p[i, j]
    for i in range(b):
        _unproject(g_u[i], u[i], ru[i])
        _unproject(g_p[i], p[i], rp[i])
        for k in range(n_neg):
            _unproject(g_n[i, k], n[i, k], rn[i, k])
    return loss


def _adam_rows(param, exp_avg, exp_avg_sq, ids, order, grads, beta1, beta2, eps,
               step_size):  # pragma: no cover -- compiled; tested through its results
    """RowAdam.update_rows for the rows `ids` (repeats allowed: their gradient rows are summed in
    the order given, as index_add_ sums them, before one update per distinct row). `order` is a
    stable argsort of `ids` (numpy's, 4x faster than numba's)."""
    d = param.shape[1]
    g = np.zeros(d, np.float32)
    start = 0
    while start < len(order):
        row = ids[order[start]]
        g[:] = 0.0
        end = start
        while end < len(order) and ids[order[end]] == row:
            for j in range(d):
                g[j] += grads[order[end], j]
            end += 1
        for j in range(d):  # lerp, as torch.lerp: old + weight * (new - old)
            m = exp_avg[row, j] + np.float32(1 - beta1) * (g[j] - exp_avg[row, j])
            v = exp_avg_sq[row, j] + np.float32(1 - beta2) * (g[j] * g[j] - exp_avg_sq[row, j])
            exp_avg[row, j] = m
            exp_avg_sq[row, j] = v
            param[row, j] += np.float32(-step_size) * (m / (np.float32(np.sqrt(v)) + np.float32(eps)))
        start = end


if AVAILABLE:
    # error_model "numpy": no zero-division checks (they block vectorising); fastmath limited to
    # reordering sums and fused multiply-adds (no approximate functions, NaN and inf kept), so
    # results differ from the torch step by rounding only
    _jit = numba.njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract", "nsz"})
    _unit, _dist2, _dot, _unproject = _jit(_unit), _jit(_dist2), _jit(_dot), _jit(_unproject)
    loss_and_grads = _jit(_loss_and_grads)
    adam_rows = _jit(_adam_rows)


def update_rows(optimizer: Any, tables: Any) -> None:
    """Lazy Adam, in place, on the touched rows of each (weight, row ids, row gradients) of
    `tables`: the update of the hand-written steps (training/fused.py, shared_step.py), with
    `optimizer` (RowAdam) advancing each weight's step count and giving its state."""
    for weight, ids, grads in tables:
        exp_avg, exp_avg_sq, step_size, (beta1, beta2, eps) = optimizer.advance(weight)
        adam_rows(weight.detach().numpy(), exp_avg.numpy(), exp_avg_sq.numpy(), ids,
                  np.argsort(ids, kind="stable"), grads, beta1, beta2, eps, step_size)
