"""In-batch negatives and uniform sampled-softmax negatives: ids shared by the whole batch."""

from __future__ import annotations


import numpy as np
import torch

from negspace.data.interactions import Interactions
from negspace.samplers.base import (Collectives, NegativeSampler, PerRowFallback, SamplerKind,
                                    to_tensor)
from negspace.samplers.candidates import CandidateSet, accidental_hit_mask, popularity_log_q
from negspace.samplers.shared import row_entries
from negspace.samplers.uniform import UniformSampler


class EmbeddingSampler(PerRowFallback, NegativeSampler):
    """Base of the samplers whose negatives the objective scores as vectors (`candidates`).

    `sample` keeps the per-row protocol by delegating to a uniform per-row sampler, so these
    objects work wherever a sampler is expected (and the triplet loss draws its per-row
    negatives from it).

    Args:
        mask_positives: also mask a candidate that is any training positive of the row's user
            (the row's own positive is always masked).
        seed: seeds the generator.
    """

    kind = SamplerKind.CANDIDATES

    def __init__(self, mask_positives: bool = True, seed: int = 0) -> None:
        super().__init__(seed)
        self.mask_positives = mask_positives
        self.per_row = UniformSampler(seed)
        self.log_q = np.zeros(0)
        self.collectives: Collectives | None = None  # set by share_batch under --nproc

    def share_batch(self, collectives: Collectives) -> None:
        """Under `--nproc` the candidates become those of the global batch (`_global_ids`), and
        every rank enqueues the whole gathered batch, so that the banks stay equal."""
        self.collectives = collectives

    def _global_ids(self, ids: np.ndarray, log_q: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        """(ids, log q, whether the objective gathers the candidates' vectors) of the global
        batch from this rank's; the batch's own positives by default: every rank's positives
        in rank order, their log q and vectors read across ranks."""
        ids = self.collectives.gather_rows(to_tensor(ids)).numpy()
        return ids, self.log_q[ids], True

    def _fit(self, train: Interactions) -> None:
        self.per_row.fit(train)
        self.log_q = popularity_log_q(train)

    def candidates(self, users: np.ndarray, items: np.ndarray, n: int) -> CandidateSet:
        """Shared negatives of a batch (see CandidateSet); `n` is used by the samplers that draw."""
        if self.train is None:
            raise RuntimeError("call fit(train) before candidates()")
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        ids, log_q = self._candidates(users, items, n)
        gathered = False
        if self.collectives is not None:
            ids, log_q, gathered = self._global_ids(ids, log_q)
        cands = CandidateSet(to_tensor(ids), torch.as_tensor(log_q, dtype=torch.float32),
                             to_tensor(self._mask(users, items, ids)),
                             torch.as_tensor(self._log_q_pos(items), dtype=torch.float32))
        if gathered:
            collectives = self.collectives
            cands.gather = lambda p: collectives.gather_rows(p, with_grad=True)
        return cands

    def _log_q_pos(self, items: np.ndarray) -> np.ndarray:
        # The positives are candidates drawn from the data, at their training frequency.
        return self.log_q[items]

    def _mask(self, users: np.ndarray, items: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return accidental_hit_mask(self.train, users, items, ids, self.mask_positives)

    def _candidates(self, users: np.ndarray, items: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def enqueue(self, items: torch.Tensor, vectors: torch.Tensor) -> None:
        """Called after each step's loss with the batch's positive item vectors; only the memory
        bank keeps them."""


class InBatchSampler(EmbeddingSampler):
    """The other positives of the batch are each row's negatives (N = B, whatever `n`); their
    sampling probability is the items' training frequency (`popularity_log_q`)."""

    name = "in-batch"

    def _candidates(self, users: np.ndarray, items: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        return items, self.log_q[items]


class UniformSoftmaxSampler(EmbeddingSampler):
    """n items drawn uniformly with replacement per batch, shared by its rows (log q is then the
    same for every candidate and the correction changes nothing)."""

    name = "uniform-softmax"
    draws_items = True

    def _candidates(self, users: np.ndarray, items: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        n_items = self.train.n_items
        return self.rng.integers(0, n_items, n), np.full(n, -np.log(n_items))

    def _global_ids(self, ids: np.ndarray, log_q: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        # rank 0's draw (seeded as one process's) on every rank; log q is the same for all
        return self.collectives.broadcast(to_tensor(ids)).numpy(), log_q, False

    def _log_q_pos(self, items: np.ndarray) -> np.ndarray:
        # As in TensorFlow's sampled softmax, the true class is corrected by the sampler's q too.
        return np.full(len(items), -np.log(self.train.n_items))

    def draw_items(self, n: int) -> torch.Tensor:
        """[n] items drawn uniformly with replacement for a batch of users, unmasked: the sample
        the sampled multinomial (`--batch-by user`, Objective.multinomial) estimates the
        catalogue's softmax sum from; rank 0's draw on every rank under `--nproc`.

        Args:
            n: items to draw.

        Returns:
            [n] item indices.
        """
        if self.train is None:
            raise RuntimeError("call fit(train) before draw_items()")
        ids = self.rng.integers(0, self.train.n_items, n)
        if self.collectives is not None:
            ids = self._global_ids(ids, np.zeros(0))[0]
        return to_tensor(ids)


class FullCatalogueSampler(EmbeddingSampler):
    """Every item is a candidate of every row: the full softmax (or CCL/MML over the whole
    catalogue), with the row's training positives masked. Exact where sampled losses estimate,
    at B x n_items scores a step: right for catalogues up to some tens of thousands of items
    (docs/guide.md, "Which loss")."""

    name = "full"

    def candidates(self, users: np.ndarray, items: np.ndarray, n: int) -> CandidateSet:
        cands = super().candidates(users, items, n)
        cands.full = True
        return cands

    def _candidates(self, users: np.ndarray, items: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        n_items = self.train.n_items
        if self._all is None or len(self._all) != n_items:
            self._all = np.arange(n_items)
        return self._all, np.zeros(n_items)

    def _log_q_pos(self, items: np.ndarray) -> np.ndarray:
        return np.zeros(len(items))  # every item is a candidate with probability 1

    def _global_ids(self, ids: np.ndarray, log_q: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        return ids, log_q, False  # the whole catalogue on every rank already

    def _mask(self, users: np.ndarray, items: np.ndarray, ids: np.ndarray) -> np.ndarray:
        # [B, n_items] written directly from the users' CSR rows (ids is the whole catalogue)
        keep = np.ones((len(users), self.train.n_items), bool)
        keep[np.arange(len(users)), items] = False
        if self.mask_positives:
            keep[row_entries(self.train, users)] = False
        return keep

    _all: np.ndarray | None = None


def positive_rows(train: Interactions, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, cols): the batch row and the item of every training positive of `users`."""
    rows, cols = row_entries(train, users.cpu().numpy())
    return torch.from_numpy(rows), torch.from_numpy(cols.astype(np.int64))
