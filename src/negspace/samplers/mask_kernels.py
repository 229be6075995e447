"""Compiled (numba) loops of the shared sampler's positive masks (samplers/shared.py); without
numba the sampler builds the same masks with numpy."""

from __future__ import annotations

from negspace.compiled import AVAILABLE, numba


def _positives_mask(indptr, indices, users, position, out):  # pragma: no cover -- compiled
    """out[r, position[i]] = True for every training positive i of users[r] with position >= 0."""
    for r in range(users.shape[0]):
        for e in range(indptr[users[r]], indptr[users[r] + 1]):
            c = position[indices[e]]
            if c >= 0:
                out[r, c] = True


def _keep_mask(indptr, indices, users, items, head, nxt, keep):  # pragma: no cover -- compiled
    """keep[r, j] = False where items[j] is a training positive of users[r] (keep starts True).
    Repeated items are chained (head[item] -> first column, nxt[column] -> the next one), so no
    distinct/inverse pass is needed; `head` (all -1, one per item) is left as it was found."""
    for j in range(items.shape[0]):
        nxt[j] = head[items[j]]
        head[items[j]] = j
    for r in range(users.shape[0]):
        for e in range(indptr[users[r]], indptr[users[r] + 1]):
            j = head[indices[e]]
            while j >= 0:
                keep[r, j] = False
                j = nxt[j]
    for j in range(items.shape[0]):
        head[items[j]] = -1


if AVAILABLE:
    _jit = numba.njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract", "nsz"})
    positives_mask = _jit(_positives_mask)
    keep_mask = _jit(_keep_mask)
