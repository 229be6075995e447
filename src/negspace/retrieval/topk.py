"""Exact top-k over all items with each user's training items masked, in user chunks."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from negspace.data.interactions import Interactions
from negspace.errors import NegspaceError

ScoreFn = Callable[[torch.Tensor], torch.Tensor]
"""Maps a LongTensor of user indices to a [len(users), n_items] score tensor, higher is better."""


def csr_entries(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """(position in `rows`, column) of every stored entry of the given CSR rows, no Python loop.

    Args:
        indptr: CSR row pointers.
        indices: CSR column indices.
        rows: the rows to read, in any order (repeats allowed).

    Returns:
        (row positions int64, columns int64), one pair per stored entry.
    """
    starts, ends = indptr[rows].astype(np.int64), indptr[rows + 1].astype(np.int64)
    lengths = ends - starts
    total = int(lengths.sum())
    row_pos = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
    # position of each entry inside its own row: a global arange minus the row's first slot
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return row_pos, indices[np.repeat(starts, lengths) + within].astype(np.int64)


def topk_items(score_fn: ScoreFn, users: np.ndarray, k: int, exclude: Interactions | None,
               chunk_size: int = 4096, candidates: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Best k items per user, never one of the user's items in `exclude`.

    Scores are computed chunk_size users at a time, so memory stays at about chunk_size x n_items
    floats (twice that with `candidates`, which gathers the candidate columns). Within a chunk the
    excluded (user, item) cells are set to -inf with one vectorised index write, ranked with
    torch.topk, and then restored, so the tensor score_fn returned is left as it was (score_fn may
    return a view of, or its own cached, score matrix; it must not be read by another thread
    during the call).

    Args:
        score_fn: LongTensor of user indices -> [len(users), n_items] scores, higher is better.
        users: user indices (row ids of `exclude`).
        k: items per user (>= 0).
        exclude: interactions whose items are never recommended to their user (the training
            data); None excludes nothing.
        chunk_size: most users passed to one score_fn call.
        candidates: optional item indices the ranking is restricted to (duplicates ignored).

    Returns:
        (items [n, k] int64, scores [n, k] float32), best first. A user with fewer than k
        admissible items (items neither excluded nor outside `candidates`, and scored above -inf)
        gets item -1 with score -inf in the remaining slots. Order among tied scores is
        unspecified.

    Raises:
        NegspaceError: a score is NaN for some admissible item (a diverged model).
        ValueError: bad k, chunk_size, candidates, or a score width that disagrees with `exclude`.
    """
    if k < 0 or chunk_size < 1:
        raise ValueError(f"need k >= 0 and chunk_size >= 1, got k={k}, chunk_size={chunk_size}")
    users = np.asarray(users, np.int64).reshape(-1)
    out_items = np.full((len(users), k), -1, np.int64)
    out_scores = np.full((len(users), k), -np.inf, np.float32)
    if k == 0 or len(users) == 0:
        return out_items, out_scores
    cand = None if candidates is None else np.unique(np.asarray(candidates, np.int64))
    with torch.no_grad():
        for start in range(0, len(users), chunk_size):
            rows = users[start:start + chunk_size]
            items, scores = _chunk_topk(score_fn(torch.from_numpy(rows)), rows, k, exclude, cand)
            out_items[start:start + len(rows), :items.shape[1]] = items
            out_scores[start:start + len(rows), :items.shape[1]] = scores
    return out_items, out_scores


def _chunk_topk(scores: torch.Tensor, rows: np.ndarray, k: int, exclude: Interactions | None,
                cand: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of one chunk of scores; returns at most k columns (fewer when fewer items exist)."""
    scores = scores.detach()
    if scores.dtype != torch.float32:
        scores = scores.float()  # a copy: ours to write into
    if scores.dim() != 2 or scores.shape[0] != len(rows):
        raise ValueError(f"score_fn returned shape {tuple(scores.shape)} for {len(rows)} users")
    n_items = scores.shape[1]
    if exclude is not None and exclude.n_items != n_items:
        raise ValueError(f"score_fn scores {n_items} items but exclude has {exclude.n_items}")
    row_pos, cols = (csr_entries(exclude.indptr, exclude.indices, rows) if exclude is not None
                     else (np.empty(0, np.int64), np.empty(0, np.int64)))
    if cand is not None:
        if len(cand) and (cand[0] < 0 or cand[-1] >= n_items):
            raise ValueError(f"candidates must lie in [0, {n_items})")
        # rank only the candidate columns (a fresh tensor) and translate excluded items into
        # candidate positions; items outside the candidates drop out
        scores = scores[:, torch.from_numpy(cand).to(scores.device)]
        slot = np.full(n_items, -1, np.int64)
        slot[cand] = np.arange(len(cand))
        cols = slot[cols]
        row_pos, cols = row_pos[cols >= 0], cols[cols >= 0]
    elif not scores.is_contiguous():
        scores = scores.contiguous()  # also rules out expanded tensors, which cannot be written
    # the seen cells go to the scores' device (a GPU keeps the chunk and its top-k there)
    r, c = torch.from_numpy(row_pos).to(scores.device), torch.from_numpy(cols).to(scores.device)
    saved = scores[r, c]  # advanced indexing copies: the values to put back
    scores[r, c] = float("-inf")
    try:
        top_scores, top_idx = torch.topk(scores, min(k, scores.shape[1]), dim=1)
    finally:
        scores[r, c] = saved
    top_scores, top_idx = top_scores.cpu().numpy(), top_idx.cpu().numpy().astype(np.int64)
    if np.isnan(top_scores).any():  # topk ranks NaN first, so any admissible NaN shows up here
        bad = int(np.isnan(top_scores).any(axis=1).sum())
        raise NegspaceError(f"the model produced NaN scores for {bad} users; it has diverged")
    items = cand[top_idx] if cand is not None else top_idx
    items[top_scores == -np.inf] = -1  # padding: masked or -inf-scored items are not admissible
    return items, top_scores
