"""Users' capped training histories as a padded index table (SimpleX and the two-tower user tower)."""

from __future__ import annotations

import numpy as np
import torch

from negspace.data.interactions import Interactions
from negspace.errors import NegspaceError


def capped_history(history: Interactions, n_users: int, n_items: int, max_len: int,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Args:
        history: training interactions, in the model's index space.
        n_users, n_items: the model's sizes (checked against `history`).
        max_len: the most items kept per user; longer histories keep a seeded random subset.
        seed: seeds that subset.

    Returns:
        ([n_users, L] item indices, padded with 0; [n_users] lengths), L = min(max_len, max degree),
        at least 1.
    """
    if history.n_users != n_users or history.n_items != n_items:
        raise NegspaceError(f"history shape {history.matrix.shape} does not match the model "
                            f"({n_users}, {n_items})")
    users, items = history.pairs()
    deg = history.user_degrees()
    # A random rank within each user; ranks < L are kept, at position = rank.
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(users)), users))
    rank = np.empty(len(users), np.int64)
    rank[order] = np.arange(len(users)) - np.repeat(history.indptr[:-1].astype(np.int64), deg)
    width = max(1, int(min(max_len, deg.max(initial=0))))
    keep = rank < width
    hist = np.zeros((n_users, width), np.int64)
    hist[users[keep], rank[keep]] = items[keep]
    return hist, np.minimum(deg, width)


# On the CPU the rows are cut to the batch's longest history (read back: free there); on an
# accelerator they keep the table's width. Tests turn this off to run the accelerator's path.
TRIM_ON_CPU = True


def history_rows(hist: torch.Tensor, hist_len: torch.Tensor, users: torch.Tensor,
                 exclude: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Args:
        hist, hist_len: the table and lengths from `capped_history`, as tensors.
        users: [B] user indices.
        exclude: optional [B] items masked out of their row (the positive being trained on).

    Returns:
        History items [B, L'] (L' = the longest history among `users`) and validity mask [B, L'].
    """
    lengths = hist_len[users]
    if hist.device.type == "cpu" and TRIM_ON_CPU:
        width = max(1, int(lengths.max())) if len(users) else 1
    else:  # the whole width: the batch's longest history would have to be read back each step
        width = hist.shape[1]
    items = hist[users, :width]
    mask = torch.arange(width, device=hist.device).unsqueeze(0) < lengths.unsqueeze(1)
    if exclude is not None:
        mask = mask & (items != exclude.unsqueeze(1))
    return items, mask
