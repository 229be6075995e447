"""The sampler protocol: given a batch of (user, positive item) rows, return N negatives per row.

Every sampler excludes the row user's training positives exactly (not "after n retries"): a
returned item is never one of them, whatever the random draw.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from enum import Enum
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from negspace.data.interactions import Interactions
from negspace.errors import NegspaceError


class SamplerKind(Enum):
    """The three sampler protocols; the trainer's step is chosen by the sampler's kind.

    PER_ROW: `sample(users, items, n, model)` -> [B, n] item indices, one row per positive pair.
    SHARED: `sample_shared(users, items, n)` -> (N item indices drawn once for the batch, [B, N]
        keep mask: False where the item is a training positive of the row's user).
    CANDIDATES: `candidates(users, items, n)` -> CandidateSet scored as vectors by the objective,
        and `enqueue(items, vectors)` after each step's loss (the memory bank keeps them).
    Samplers of the last two kinds keep `sample` too (a per-row fallback: the triplet loss
    draws its per-row negatives from it).
    """

    PER_ROW = "per-row"
    SHARED = "shared"
    CANDIDATES = "candidates"


class Collectives(Protocol):
    """What a candidate sampler needs from a process group to make its candidates those of the
    global batch under `--nproc` (distributed/process_group.py DistContext implements it)."""

    def gather_rows(self, local: torch.Tensor, with_grad: bool = False) -> torch.Tensor: ...

    def broadcast(self, tensor: torch.Tensor) -> torch.Tensor: ...


class NegativeSampler(ABC):
    """Base class. Subclasses implement `_sample`; `fit` must be called with the training data first.

    Class attributes (the sampler's contract, read by the trainer and the device step):
        kind: which protocol its draws follow (SamplerKind).
        reads_model: sampling reads the current embeddings (its draws cannot be prefetched).
        draws_items: `draw_items` returns a draw, not None (the device step draws its own
            on the accelerator for such a sampler: samplers/device.py).
    Batches of users (`--batch-by user`) read `draw_items` whatever the kind.

    Args:
        seed: seeds the sampler's own numpy generator (its state is saved in checkpoints).
    """

    name: str = "base"
    kind: ClassVar[SamplerKind] = SamplerKind.PER_ROW
    reads_model: ClassVar[bool] = False
    draws_items: ClassVar[bool] = False

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.train: Interactions | None = None

    def fit(self, train: Interactions) -> "NegativeSampler":
        degrees = train.user_degrees()
        full = np.flatnonzero(degrees >= train.n_items)
        if len(full):
            raise NegspaceError(f"user {train.user_ids[full[0]]!r} has interacted with every item: "
                                "no negative exists for it")
        self.train = train
        self._fit(train)
        return self

    def _fit(self, train: Interactions) -> None:
        """Precomputation hook."""

    def sample(self, users: np.ndarray, items: np.ndarray, n: int, model: Any = None) -> np.ndarray:
        """Draws negatives.

        Args:
            users: [B] user indices of the batch rows.
            items: [B] positive item index of each row.
            n: negatives per row.
            model: the model being trained (read by samplers with `reads_model`).

        Returns:
            [B, n] int64 item indices, none of them a training positive of the row's user.
        """
        if self.train is None:
            raise RuntimeError("call fit(train) before sample()")
        if n < 1:
            raise NegspaceError(f"number of negatives must be >= 1, got {n}")
        return self._sample(np.asarray(users, np.int64), np.asarray(items, np.int64), n, model)

    @abstractmethod
    def _sample(self, users: np.ndarray, items: np.ndarray, n: int, model: Any) -> np.ndarray: ...

    def draw_items(self, n: int) -> torch.Tensor | None:
        """The items a batch of users' softmax (`--batch-by user`, Objective.multinomial) estimates
        the catalogue's sum from. None by default: the sum runs over every item, exactly; a sampler
        whose draw estimates it (UniformSoftmaxSampler) returns its [n] items.

        Args:
            n: items to draw.

        Returns:
            [n] item indices, or None for the exact sum.
        """
        return None

    def epoch_notes(self) -> dict[str, float]:
        """Columns this sampler adds to each epoch's history row (none by default)."""
        return {}

    @property
    def has_device_law(self) -> bool:
        """Whether samplers/device.py can draw this sampler's law on an accelerator."""
        return True

    def share_batch(self, collectives: Collectives) -> None:
        """Under `--nproc`: make the draws those of the global batch. Per-row and shared draws
        need nothing (each rank draws for its own rows, seeded by rank)."""

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


class PerRowFallback:
    """For samplers whose own draws are not [B, N] indices (shared, in-batch, bank): `sample`
    falls back to the index sampler `self.per_row`, and the state holds both generators."""

    per_row: NegativeSampler
    rng: np.random.Generator

    def _sample(self, users: np.ndarray, items: np.ndarray, n: int, model: Any) -> np.ndarray:
        return self.per_row.sample(users, items, n, model)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "per_row": self.per_row.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.per_row.load_state_dict(state["per_row"])


class ComplementIndex:
    """Maps "the r-th item the user has NOT interacted with" to an item index, vectorised.

    For a user with sorted positives p_0 < p_1 < ..., the r-th (0-based) non-positive item is
    r + #{i : p_i - i <= r}. Storing q_i = p_i - i for all users in one sorted array (offset by
    user * (n_items + 1) so rows never mix) turns that count into one searchsorted call.
    """

    def __init__(self, train: Interactions) -> None:
        users, items = train.pairs()
        self.n_items = train.n_items
        self.indptr = train.indptr.astype(np.int64)
        rank = np.arange(train.nnz, dtype=np.int64) - np.repeat(self.indptr[:-1], train.user_degrees())
        self.q = users * (self.n_items + 1) + (items - rank)
        self.n_free = self.n_items - train.user_degrees()

    def lookup(self, users: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Item index of the r-th non-positive item of each user (r < n_free[user]); shapes broadcast."""
        target = users * (self.n_items + 1) + r
        k = np.searchsorted(self.q, target, side="right") - self.indptr[users]
        return r + k


def to_tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))
