"""Cross-batch negative sampling (CBNS, Wang et al., SIGIR 2021): a FIFO memory bank of detached
item vectors from recent batches, reused as negatives next to the in-batch ones."""

from __future__ import annotations

import numpy as np
import torch

from negspace.errors import NegspaceError
from negspace.samplers.base import to_tensor
from negspace.samplers.candidates import CandidateSet, accidental_hit_mask
from negspace.samplers.in_batch import InBatchSampler


class MemoryBankSampler(InBatchSampler):
    """In-batch candidates plus the bank's stored vectors, ids and log q.

    The bank is a ring of `size` slots filled by `enqueue` (called by the trainer after each
    step's loss with the batch's positive item vectors, computed before the update); only the
    filled part is used, and only from step `warmup` on (counted in calls to `candidates`), because
    the first steps' vectors move too fast to stand in for the current ones.

    With the triplet loss (CML) the stored vectors are extra candidates of each row's
    hardest-of-N hinge, next to the N per-row negatives; there every training positive of the
    row's user is masked, as the per-row samplers exclude them.

    Args:
        size: M, the number of stored vectors.
        warmup: W, steps before the bank is used.
        mask_positives: also mask bank and batch candidates that are the user's other positives.
        seed: seeds the generator.
    """

    name = "memory-bank"

    def __init__(self, size: int = 2048, warmup: int = 0, mask_positives: bool = True,
                 seed: int = 0) -> None:
        super().__init__(mask_positives, seed)
        if size < 1:
            raise NegspaceError(f"memory bank size must be >= 1; got {size}")
        if warmup < 0:
            raise NegspaceError(f"memory bank warm-up must be >= 0; got {warmup}")
        self.size, self.warmup = size, warmup
        self.vectors: torch.Tensor | None = None  # [size, d], allocated at the first enqueue
        self.ids = torch.full((size,), -1, dtype=torch.int64)
        self.head, self.filled, self.steps = 0, 0, 0

    def candidates(self, users: np.ndarray, items: np.ndarray, n: int) -> CandidateSet:
        cands = super().candidates(users, items, n)
        self.steps += 1
        if self.steps <= self.warmup or self.filled == 0:
            return cands
        ids = self.ids[:self.filled].clone()  # enqueue overwrites the ring before backward
        cands.bank_vectors = self.vectors[:self.filled].clone()  # enqueue writes before backward
        cands.bank_ids = ids
        cands.bank_log_q = torch.as_tensor(self.log_q[ids.numpy()], dtype=torch.float32)
        cands.bank_mask = to_tensor(accidental_hit_mask(
            self.train, np.asarray(users, np.int64), np.asarray(items, np.int64), ids.numpy(),
            self.mask_positives))
        return cands

    def enqueue(self, items: torch.Tensor, vectors: torch.Tensor) -> None:
        """Stores the newest vectors over the oldest ones (first in, first out); under `--nproc`
        those of the whole global batch, on every rank."""
        if self.collectives is not None:
            items, vectors = (self.collectives.gather_rows(items),
                              self.collectives.gather_rows(vectors.detach()))
        vectors = vectors.detach()[-self.size:]
        items = items[-self.size:]
        if self.vectors is None:
            self.vectors = torch.zeros((self.size, vectors.shape[1]), dtype=vectors.dtype)
        slots = (self.head + torch.arange(len(items))) % self.size
        self.vectors[slots] = vectors
        self.ids[slots] = items
        self.head = int((self.head + len(items)) % self.size)
        self.filled = min(self.size, self.filled + len(items))

    def contents(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, vectors) of the stored entries, oldest first."""
        if self.vectors is None:
            return self.ids[:0], torch.zeros((0, 0))
        order = (self.head - self.filled + torch.arange(self.filled)) % self.size
        return self.ids[order], self.vectors[order]

    def state_dict(self) -> dict:
        return {**super().state_dict(), "vectors": None if self.vectors is None else self.vectors.clone(),
                "ids": self.ids.clone(), "head": self.head, "filled": self.filled, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.vectors = None if state["vectors"] is None else state["vectors"].clone()
        self.ids = state["ids"].clone()
        self.head, self.filled, self.steps = state["head"], state["filled"], state["steps"]
