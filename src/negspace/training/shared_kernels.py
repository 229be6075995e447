"""Compiled (numba) loops of the shared-negative cosine step (training/shared_step.py); the
shared sampler's positive masks are in samplers/mask_kernels.py. The matrix products stay in torch (BLAS); these loops do the
lookups, normalisations, the MML/CCL terms and their gradient, and the back-projection through
the normalisation, with no intermediate tensors. Optional like training/kernels.py.
"""

from __future__ import annotations

import numpy as np

from negspace.training.kernels import NORM_EPS, numba

AVAILABLE = numba is not None


def _gather_unit(table, ids, out, norms):  # pragma: no cover -- compiled
    """out[r] = table[ids[r]] / max(|table[ids[r]]|, eps); norms[r] the floored norm."""
    d = table.shape[1]
    for r in range(ids.shape[0]):
        row = ids[r]
        s = np.float32(0.0)
        for j in range(d):
            s += table[row, j] * table[row, j]
        nrm = max(np.float32(np.sqrt(s)), np.float32(NORM_EPS))
        norms[r] = nrm
        for j in range(d):
            out[r, j] = table[row, j] / nrm


def _prepare(wu, wi, u_ids, item_ids, u, pn, ru, rpn, pos):  # pragma: no cover -- compiled
    """The user rows and the item rows (positives, then negatives) gathered and normalised, and
    the positives' scores pos[i] = u[i] . pn[i], in one call."""
    _gather_unit(wu, u_ids, u, ru)
    _gather_unit(wi, item_ids, pn, rpn)
    d = u.shape[1]
    for i in range(u.shape[0]):
        s = np.float32(0.0)
        for j in range(d):
            s += u[i, j] * pn[i, j]
        pos[i] = s


def _margin_terms(scores, keep, pos, margins, weights, pos_weight, neg_weight, g_pos):
    # pragma: no cover -- compiled; tested through the step
    """Mean over rows of a_p [1 - pos]_+ + a_n mean_{kept j} sum_k lam_k [s_ij - m_k]_+.
    Overwrites `scores` with dLoss/ds_ij and fills g_pos with dLoss/dpos_i; returns the loss.
    Branch-free inner loops over j (one margin at a time), so that they vectorise."""
    b, n = scores.shape
    inv_b = np.float32(1.0 / b)
    terms = np.empty(n, np.float32)
    slope = np.empty(n, np.float32)
    total = np.float32(0.0)
    for i in range(b):
        cnt = np.float32(0.0)
        for j in range(n):
            terms[j] = np.float32(0.0)
            slope[j] = np.float32(0.0)
            cnt += np.float32(keep[i, j])
        for k in range(margins.shape[0]):
            m, lam = margins[k], weights[k]
            for j in range(n):
                x = scores[i, j] - m
                terms[j] += lam * max(x, np.float32(0.0))
                slope[j] += lam if x > 0 else np.float32(0.0)
        denom = max(cnt, np.float32(1.0))
        coef = np.float32(neg_weight) / denom * inv_b
        acc = np.float32(0.0)
        for j in range(n):
            kf = np.float32(keep[i, j])
            acc += kf * terms[j]
            scores[i, j] = kf * slope[j] * coef
        hinge = np.float32(1.0) - pos[i]
        g_pos[i] = -np.float32(pos_weight) * inv_b if hinge > 0 else np.float32(0.0)
        total += np.float32(pos_weight) * max(hinge, np.float32(0.0)) + np.float32(neg_weight) * acc / denom
    return total * inv_b


def _finish_grads(g_u, g_p, g_n, u, p, n, g_pos, ru, rp, rn):  # pragma: no cover -- compiled
    """Adds the positive term's gradient (g_u += g_pos p, g_p = g_pos u), then maps every
    gradient back through v = raw / |raw|: g <- (g - v (v . g)) / |raw|."""
    b, d = u.shape
    for i in range(b):
        for j in range(d):
            g_u[i, j] += g_pos[i] * p[i, j]
            g_p[i, j] = g_pos[i] * u[i, j]
    for g, v, r in ((g_u, u, ru), (g_p, p, rp), (g_n, n, rn)):
        for i in range(g.shape[0]):
            s = np.float32(0.0)
            for j in range(d):
                s += g[i, j] * v[i, j]
            for j in range(d):
                g[i, j] = (g[i, j] - v[i, j] * s) / r[i]


if AVAILABLE:
    _jit = numba.njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract", "nsz"})
    _gather_unit = gather_unit = _jit(_gather_unit)
    prepare = _jit(_prepare)
    margin_terms = _jit(_margin_terms)
    finish_grads = _jit(_finish_grads)
