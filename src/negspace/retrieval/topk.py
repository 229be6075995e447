"""Exact top-k over all items with each user's training items masked, in user chunks."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from negspace.data.interactions import Interactions

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


def _row_positions(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(chunk row, CSR position) of every stored entry of the given rows, vectorised."""
    starts, ends = indptr[rows], indptr[rows + 1]
    lengths = (ends - starts).astype(np.int64)
    chunk_rows = np.repeat(np.arange(len(rows)), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return chunk_rows, np.repeat(starts, lengths) + offsets


def topk_items(score_fn: ScoreFn, users: np.ndarray, k: int, exclude: Interactions | None,
               chunk_size: int = 4096, candidates: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Best k items per user, never one of the user's rows in `exclude`.

    Args:
        score_fn: maps a LongTensor of user indices to [len, n_items] scores (higher is better).
        users: user indices.
        k: items per user.
        exclude: interactions whose items are masked (the training data); None masks nothing.
        chunk_size: users scored at a time (bounds memory at chunk_size x n_items floats).
        candidates: optional item indices to restrict the ranking to.

    Returns:
        (items [n, k] int64, scores [n, k] float32), best first. A user with fewer than k admissible
        items gets item -1 with score -inf in the tail.
    """
    users = np.asarray(users, np.int64)
    out_items = np.full((len(users), k), -1, np.int64)
    out_scores = np.full((len(users), k), -np.inf, np.float32)
    with torch.no_grad():
        for start in range(0, len(users), chunk_size):
            rows = users[start:start + chunk_size]
            scores = score_fn(torch.from_numpy(rows)).float()
            if scores._is_view() or not scores.is_contiguous():
                scores = scores.clone()  # masking writes in place: never into the caller's tensor
            n_items = scores.shape[1]
            if candidates is not None:
                keep = torch.zeros(n_items, dtype=torch.bool)
                keep[torch.from_numpy(np.asarray(candidates, np.int64))] = True
                scores = scores.masked_fill(~keep, float("-inf"))
            if exclude is not None:
                r, pos = _row_positions(exclude.indptr, rows)
                scores[torch.from_numpy(r), torch.from_numpy(exclude.indices[pos].astype(np.int64))] = float("-inf")
            kk = min(k, n_items)
            top_scores, top_items = torch.topk(scores, kk, dim=1)
            top_items = top_items.numpy()
            top_scores = top_scores.numpy()
            top_items[~np.isfinite(top_scores)] = -1
            out_items[start:start + len(rows), :kk] = top_items
            out_scores[start:start + len(rows), :kk] = top_scores
    return out_items, out_scores
