"""Full-ranking scores written into one reused buffer.

Ranking all items for every user is a [chunk, n_items] score matrix per chunk of users. Built
afresh each time (`u @ v.T`, then the l2 terms as new tensors), every chunk maps new pages: on
300k users x 200k items that was 173M minor page faults and as much system time as user time
(issue 14). Here the item side is prepared once and each chunk's scores go into the same buffer
(`torch.mm(..., out=)` and in-place updates), so the pages are mapped once per evaluation.
The arithmetic is that of `models.base.score_matrix`, in the same order, so the scores are the
same bits (2 * (u @ v.T) equals (2 * u) @ v.T exactly: a power of two only moves exponents).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from negspace.models.base import EmbeddingModel


class BufferedScorer:
    """Callable users -> [len(users), n_items] scores (higher is better), for `evaluate` and
    `topk_items`. The returned tensor is a view of the scorer's buffer, overwritten by the next
    call: callers use it before calling again (as the ranking loop does); not thread-safe.

    Args:
        user_vectors: LongTensor of user indices -> [n, d] user vectors.
        item_vectors: [n_items, d] item vectors (all of them).
        measure: "l2" (minus the squared distance), "dot" or "cosine".
    """

    def __init__(self, user_vectors: Callable[[torch.Tensor], torch.Tensor],
                 item_vectors: torch.Tensor, measure: str) -> None:
        self.user_vectors, self.measure = user_vectors, measure
        with torch.no_grad():
            items = item_vectors.detach()
            if measure == "cosine":
                items = nn.functional.normalize(items, dim=-1)
            self.items_t = items.T  # a view: mm reads it transposed, as u @ v.T does
            self.item_sq = items.pow(2).sum(-1) if measure == "l2" else None
        self.buffer: torch.Tensor | None = None

    def __call__(self, users: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            u = self.user_vectors(users).detach()
            if self.measure == "cosine":
                u = nn.functional.normalize(u, dim=-1)
            n, n_items = u.shape[0], self.items_t.shape[1]
            dtype = torch.result_type(u, self.items_t)
            if self.buffer is None or self.buffer.shape[0] < n or self.buffer.dtype != dtype:
                self.buffer = torch.empty((n, n_items), dtype=dtype, device=u.device)
            out = self.buffer[:n]
            torch.mm(u, self.items_t, out=out)
            if self.measure == "l2":
                out.mul_(2).sub_(u.pow(2).sum(-1, keepdim=True)).sub_(self.item_sq)
            return out


def model_scorer(model: EmbeddingModel) -> BufferedScorer:
    """A buffered full-ranking scorer of a model, with the item vectors computed once."""
    with torch.no_grad():
        items = model.item_vectors(None)
    if items.device.type == "cpu":
        return BufferedScorer(model.user_vectors, items, model.measure)
    # a model on an accelerator: the users' indices go there, the scores stay there
    return BufferedScorer(lambda users: model.user_vectors(users.to(items.device)), items,
                          model.measure)
