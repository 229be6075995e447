"""Large tensors from the heap rather than from fresh memory mappings (glibc).

Why: glibc serves every allocation above its mmap threshold (at most 32 MB when it adjusts the
threshold itself) with a new mapping, whose pages the kernel faults in and zeroes on first
touch, and returns it to the kernel on free. A step of the full softmax by users allocates its
[256 users x n_items] score matrix and gradients afresh each time: 42 MB on gowalla-lightgcn,
where those page faults took about 40% of a step (fused loss and products, one thread: 200 ms a
step against 117 ms with the threshold raised). Above the raised threshold the blocks come back
from malloc's free lists instead, already mapped.

Setting the mmap threshold also fixes glibc's trim threshold at its 128 kB default (it no longer
follows the mmap threshold up): a freed score matrix at the top of the heap is then handed back
to the kernel and faulted in again by the next step. So the trim threshold is raised with it.
With only the mmap threshold raised, a gowalla-lightgcn step of the default recipe (d 128, graph
encoder, two threads) spent 53 ms in each pass that allocates a [256, 40,981] matrix (the
scores' product, the shift by the row maximum, the gradient's scaling), against 11 to 23 ms with
both raised (bench/train_step.py). The cost: up to LARGE_BLOCKS of freed heap stays mapped to the
process until it exits or reuses it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
LARGE_BLOCKS = 1 << 30  # allocations up to 1 GiB come from the heap

_applied: bool | None = None


def keep_large_blocks(trim: bool = True) -> bool:
    """Raises glibc's mmap threshold, and its trim threshold, to LARGE_BLOCKS; once per process
    (the first call decides; later calls change nothing).

    Args:
        trim: also raise the trim threshold (False: only the mmap threshold, as benches compare).

    Returns:
        Whether it applies (False off Linux or without glibc: nothing changes there).
    """
    global _applied
    if _applied is None:
        _applied = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                _applied = bool(libc.mallopt(M_MMAP_THRESHOLD, LARGE_BLOCKS))
                if _applied and trim:
                    libc.mallopt(M_TRIM_THRESHOLD, LARGE_BLOCKS)
            except (OSError, AttributeError):  # musl and others have no mallopt: unchanged
                pass
    return _applied


def keep_glibc_defaults() -> None:
    """Decides for glibc's own thresholds: later `keep_large_blocks` calls change nothing (a
    benchmark's baseline; call it before training starts). Once the thresholds are raised, this
    changes nothing either."""
    global _applied
    if _applied is None:
        _applied = False
