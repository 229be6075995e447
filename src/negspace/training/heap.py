"""Large tensors from the heap rather than from fresh memory mappings (glibc).

Why: glibc serves every allocation above its mmap threshold (at most 32 MB when it adjusts the
threshold itself) with a new mapping, whose pages the kernel faults in and zeroes on first
touch, and returns it to the kernel on free. A step of the full softmax by users allocates its
[256 users x n_items] score matrix and gradients afresh each time: 42 MB on gowalla-lightgcn,
where those page faults took about 40% of a step (fused loss and products, one thread: 200 ms a
step against 117 ms with the threshold raised). Above the raised threshold the blocks come back
from malloc's free lists instead, already mapped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
LARGE_BLOCKS = 1 << 30  # allocations up to 1 GiB come from the heap

_applied: bool | None = None


def keep_large_blocks() -> bool:
    """Raises glibc's mmap threshold to LARGE_BLOCKS, once per process (idempotent).

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
            except (OSError, AttributeError):  # musl and others have no mallopt: unchanged
                pass
    return _applied
