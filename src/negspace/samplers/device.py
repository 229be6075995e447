"""The samplers' laws as torch operations on the training device (a GPU), with no host round trip
per step: every table (complement index, popularity CDF in float64, the users' positives as
sorted keys, log q, the memory bank) lives on the device and every draw comes from a torch
generator there. The host samplers (numpy) stay the CPU path, bit for bit; these draw the same
laws with other random numbers (tests/samplers/test_device_samplers.py checks the laws on the CPU).

- uniform: the r-th non-positive item of the user by one searchsorted (`ComplementIndex`).
- popularity: the user's exact conditional law by inverse CDF, with no rejection: the smallest j
  with F(j) - P_u(j) > x, F the float64 popularity CDF and P_u the mass of the user's positives
  up to j, found by a fixed number of bisection steps (so nothing waits on the host); users whose
  positives hold all the mass draw uniformly among their other items, as on the host.
  `torch.multinomial` is not used: it refuses more than 2^24 categories.
- shared: N uniform or popularity draws, masked per row where they are the user's positives.
- two-stage: Gumbel-top-C over beta log f (stage 1), Gumbel-top-N over the spread-out log weights
  with the user's positives at -inf (stage 2): successive sampling, the law of the host sampler;
  rows with fewer than N weighted candidates take zero-weight ones at random (keys -1e4 + g), then
  popularity negatives.
- in-batch, uniform-softmax, full, memory bank: the same CandidateSet, on the device.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from negspace.data.interactions import Interactions
from negspace.errors import NegspaceError
from negspace.samplers.base import NegativeSampler
from negspace.samplers.candidates import CandidateSet, popularity_log_q
from negspace.samplers.in_batch import (EmbeddingSampler, FullCatalogueSampler,
                                        UniformSoftmaxSampler)
from negspace.samplers.memory_bank import MemoryBankSampler
from negspace.samplers.popularity import PopularitySampler, popularity_weights
from negspace.samplers.shared import SharedNegativeSampler
from negspace.samplers.two_stage import TwoStageSampler, spread_out_log_weights
from negspace.samplers.uniform import UniformSampler


class PositiveIndex:
    """The training pairs as sorted keys user * n_items + item on the device: membership of any
    (user, item) tensors by one searchsorted, and per-user rows through `indptr`."""

    def __init__(self, train: Interactions, device: torch.device) -> None:
        users, items = train.pairs()
        self.n_items = train.n_items
        self.keys = torch.from_numpy(users.astype(np.int64) * self.n_items + items).to(device)
        self.indptr = torch.from_numpy(train.indptr.astype(np.int64)).to(device)
        self.degrees = self.indptr[1:] - self.indptr[:-1]

    def contains(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Whether each (user, item), broadcast, is a training pair."""
        q = users * self.n_items + items
        if len(self.keys) == 0:
            return torch.zeros_like(q, dtype=torch.bool)
        at = torch.searchsorted(self.keys, q).clamp_(max=len(self.keys) - 1)
        return self.keys[at] == q

    def count_up_to(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Global position just past the user's positives <= item (searchsorted, right)."""
        return torch.searchsorted(self.keys, users * self.n_items + items, right=True)


class DeviceSampler:
    """One host sampler's law on `device`, with its own seeded torch generator.

    Args:
        host: the fitted host sampler (its settings and seed are read, its tables copied).
        device: where to draw.
    """

    def __init__(self, host: NegativeSampler, device: torch.device) -> None:
        if host.train is None:
            raise RuntimeError("fit the host sampler first")
        self.host, self.device = host, device
        train = host.train
        self.n_items = train.n_items
        # seeded from the host generator's state: the same seed gives the same device draws
        seed = int(host.rng.bit_generator.state["state"]["state"] % (2 ** 63))
        self.gen = torch.Generator(device=device).manual_seed(seed)
        self.pos = PositiveIndex(train, device)
        users, items = train.pairs()
        rank = np.arange(train.nnz, dtype=np.int64) - np.repeat(train.indptr[:-1].astype(np.int64),
                                                                 train.user_degrees())
        # ComplementIndex on the device: q_i = user * (n_items + 1) + (p_i - i), sorted
        self.q = torch.from_numpy(users.astype(np.int64) * (self.n_items + 1) + (items - rank)).to(device)
        self.n_free = (self.n_items - self.pos.degrees)
        beta = getattr(host, "beta", 1.0)
        self._popularity(train, beta)
        self.log_q = torch.from_numpy(popularity_log_q(train)).float().to(device)
        self.bank: _Bank | None = None
        if isinstance(host, MemoryBankSampler):
            self.bank = _Bank(host.size, device)
        self.steps = 0
        self._calls, self._cached = 0, None  # 2-stage: batches drawn, its cached item vectors

    # ------------------------------------------------------------------------ building blocks
    def _popularity(self, train: Interactions, beta: float) -> None:
        w = popularity_weights(train, beta)
        total = w.sum()
        self.log_pop = torch.from_numpy(np.where(w > 0, np.log(np.maximum(w, 1e-300)), -np.inf)).to(self.device)
        if total <= 0:
            self.cdf = None
            return
        self.cdf = torch.from_numpy(np.cumsum(w) / total).to(self.device)            # float64
        pw = w[train.indices] / total
        self.pos_cum = torch.from_numpy(np.concatenate([[0.0], np.cumsum(pw)])).to(self.device)
        self.pos_mass = self.pos_cum[self.pos.indptr[1:]] - self.pos_cum[self.pos.indptr[:-1]]
        self.no_mass = self.pos_mass >= 1.0 - 1e-12
        self._bisect_steps = max(1, math.ceil(math.log2(max(self.n_items, 2)))) + 1

    def _rand(self, *shape: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        return torch.rand(shape, generator=self.gen, device=self.device, dtype=dtype)

    def uniform(self, users: torch.Tensor, n: int) -> torch.Tensor:
        """[B, n] uniform non-positive items of each user (exact, no rejection)."""
        free = self.n_free[users].unsqueeze(1)
        r = torch.minimum((self._rand(len(users), n) * free).long(), free - 1)
        target = users.unsqueeze(1) * (self.n_items + 1) + r
        k = torch.searchsorted(self.q, target, right=True) - self.pos.indptr[users].unsqueeze(1)
        return r + k

    def popularity(self, users: torch.Tensor, n: int) -> torch.Tensor:
        """[B, n] draws from the user's popularity law conditioned on not being a positive."""
        if self.cdf is None:
            raise NegspaceError("popularity sampler: no item has a positive weight")
        u = users.unsqueeze(1).expand(-1, n)
        start = self.pos_cum[self.pos.indptr[u]]
        x = self._rand(len(users), n) * (1.0 - self.pos_mass[u])
        lo = torch.zeros_like(u)
        hi = torch.full_like(u, self.n_items - 1)
        for _ in range(self._bisect_steps):  # smallest j with F(j) - P_u(j) > x
            mid = (lo + hi) // 2
            f = self.cdf[mid] - (self.pos_cum[self.pos.count_up_to(u, mid)] - start)
            above = f > x
            hi = torch.where(above, mid, hi)
            lo = torch.where(above, lo, mid + 1)
        out = torch.minimum(lo, hi)
        return torch.where(self.no_mass[u], self.uniform(users, n), out)

    def popularity_shared(self, n: int) -> torch.Tensor:
        at = torch.searchsorted(self.cdf, self._rand(n), right=True)
        return at.clamp_(max=self.n_items - 1)

    # ------------------------------------------------------------------------ the protocol
    def sample(self, users: torch.Tensor, items: torch.Tensor, n: int, model: Any = None) -> torch.Tensor:
        """[B, n] per-row negatives (the host sampler's `sample`)."""
        host = self.host
        if isinstance(host, TwoStageSampler):
            return self._two_stage(users, items, n, model)
        if isinstance(host, PopularitySampler) or (
                isinstance(host, SharedNegativeSampler) and host.law == "popularity"):
            return self.popularity(users, n)
        return self.uniform(users, n)  # uniform, and the per-row draws of the other samplers

    def sample_shared(self, users: torch.Tensor, items: torch.Tensor, n: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """([n] shared items, [B, n] keep mask), as SharedNegativeSampler.sample_shared."""
        if self.host.law == "uniform":
            neg = torch.randint(0, self.n_items, (n,), generator=self.gen, device=self.device)
        else:
            neg = self.popularity_shared(n)
        return neg, ~self.pos.contains(users.unsqueeze(1), neg.unsqueeze(0))

    def draw_items(self, n: int) -> torch.Tensor | None:
        """The host's `draw_items` on the device: a uniform draw for a host that draws items
        (UniformSoftmaxSampler), None (the exact sum) for the others, as their host default."""
        if not self.host.draws_items:
            return None
        return torch.randint(0, self.n_items, (n,), generator=self.gen, device=self.device)

    def candidates(self, users: torch.Tensor, items: torch.Tensor, n: int) -> CandidateSet:
        """The embedding-level samplers' CandidateSet on the device."""
        host = self.host
        full = isinstance(host, FullCatalogueSampler)
        if isinstance(host, UniformSoftmaxSampler):
            ids = torch.randint(0, self.n_items, (n,), generator=self.gen, device=self.device)
            log_q = torch.full((n,), -math.log(self.n_items), device=self.device)
            log_q_pos = torch.full((len(items),), -math.log(self.n_items), device=self.device)
        elif full:
            ids = torch.arange(self.n_items, device=self.device)
            log_q = torch.zeros(self.n_items, device=self.device)
            log_q_pos = torch.zeros(len(items), device=self.device)
        else:  # in-batch and the memory bank's batch part: the positives themselves
            ids, log_q, log_q_pos = items, self.log_q[items], self.log_q[items]
        cands = CandidateSet(ids, log_q, self._mask(users, items, ids), log_q_pos, full=full)
        self.steps += 1
        bank = self.bank
        if bank is not None and self.steps > self.host.warmup and bank.filled:
            bank_ids = bank.ids[:bank.filled].clone()
            cands.bank_vectors = bank.vectors[:bank.filled].clone()
            cands.bank_ids = bank_ids
            cands.bank_log_q = self.log_q[bank_ids]
            cands.bank_mask = self._mask(users, items, bank_ids)
        return cands

    def _mask(self, users: torch.Tensor, items: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        keep = ids.unsqueeze(0) != items.unsqueeze(1)
        if self.host.mask_positives and len(ids):
            keep &= ~self.pos.contains(users.unsqueeze(1), ids.unsqueeze(0))
        return keep

    def enqueue(self, items: torch.Tensor, vectors: torch.Tensor) -> None:
        if self.bank is not None:
            self.bank.enqueue(items, vectors)

    # ------------------------------------------------------------------------ 2-stage
    def _two_stage(self, users: torch.Tensor, items: torch.Tensor, n: int, model: Any) -> torch.Tensor:
        host: TwoStageSampler = self.host
        if host.released:
            raise NegspaceError("two-stage-released runs on the CPU only (its fallback reproduces "
                                "float32 overflows of the released code); use --device cpu")
        n_weighted = host.n_weighted
        c = min(host.n_candidates, n_weighted)
        e = torch.empty(self.n_items, device=self.device, dtype=torch.float64)
        e.exponential_(generator=self.gen)
        cand = torch.topk(self.log_pop - e.log(), c).indices  # Gumbel-top-C over log f^beta
        ids = torch.cat([items, cand])
        with torch.no_grad():
            if host.refresh_every > 1:  # the released code's stale vectors, as on the host
                if self._cached is None or self._calls % host.refresh_every == 0:
                    self._cached = _unit(model, model.item_vectors(None).float())
                vecs = self._cached[ids]
            else:
                vecs = _unit(model, model.item_vectors(ids).float())
        self._calls += 1
        s = vecs[:len(items)] @ vecs[len(items):].T                       # [B, C]
        lw = spread_out_log_weights(s, vecs.shape[1], host.cap, host.temperature)
        positive = self.pos.contains(users.unsqueeze(1), cand.unsqueeze(0))
        g = -torch.empty_like(s).exponential_(generator=self.gen).log_()  # Gumbel noise
        keys2 = torch.where(torch.isfinite(lw), lw, torch.full_like(lw, -1e4)) + g
        keys2 = keys2.masked_fill(positive, float("-inf"))
        top = torch.topk(keys2, min(n, c), dim=1)
        picks = cand[top.indices]
        ok = torch.isfinite(top.values)
        fill = self.popularity(users, n)
        if picks.shape[1] < n:
            picks = torch.cat([picks, fill[:, picks.shape[1]:]], dim=1)
            ok = torch.cat([ok, torch.zeros_like(fill[:, ok.shape[1]:], dtype=torch.bool)], dim=1)
        return torch.where(ok, picks, fill)

    # ------------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        out = {"gen": self.gen.get_state(), "steps": self.steps, "calls": self._calls,
               "cached": None if self._cached is None else self._cached.cpu()}
        if self.bank is not None:
            out["bank"] = self.bank.state_dict()
        return out

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
        self.steps = state["steps"]
        self._calls = state.get("calls", 0)
        cached = state.get("cached")
        self._cached = None if cached is None else cached.to(self.device)
        if self.bank is not None and "bank" in state:
            self.bank.load_state_dict(state["bank"])


def _unit(model: Any, v: torch.Tensor) -> torch.Tensor:
    """Unit vectors; CML on the sphere already returns them."""
    return v if getattr(model, "norm", None) == "sphere" else F.normalize(v, dim=-1)


class _Bank:
    """The memory bank's ring on the device; head and filled are host integers (no sync)."""

    def __init__(self, size: int, device: torch.device) -> None:
        self.size, self.device = size, device
        self.vectors: torch.Tensor | None = None
        self.ids = torch.full((size,), -1, dtype=torch.int64, device=device)
        self.head = self.filled = 0

    def enqueue(self, items: torch.Tensor, vectors: torch.Tensor) -> None:
        vectors, items = vectors.detach()[-self.size:], items[-self.size:]
        if self.vectors is None:
            self.vectors = torch.zeros((self.size, vectors.shape[1]), dtype=torch.float32,
                                       device=self.device)
        slots = (self.head + torch.arange(len(items), device=self.device)) % self.size
        self.vectors[slots] = vectors.float()
        self.ids[slots] = items
        self.head = (self.head + len(items)) % self.size
        self.filled = min(self.size, self.filled + len(items))

    def state_dict(self) -> dict:
        return {"vectors": None if self.vectors is None else self.vectors.cpu(),
                "ids": self.ids.cpu(), "head": self.head, "filled": self.filled}

    def load_state_dict(self, state: dict) -> None:
        v = state["vectors"]
        self.vectors = None if v is None else v.to(self.device)
        self.ids = state["ids"].to(self.device)
        self.head, self.filled = state["head"], state["filled"]


SUPPORTED = (UniformSampler, PopularitySampler, SharedNegativeSampler, TwoStageSampler,
             EmbeddingSampler)


def device_sampler(host: NegativeSampler, device: torch.device) -> DeviceSampler | None:
    """The device version of a fitted host sampler, or None where there is none (then the trainer
    draws on the host and copies the indices over)."""
    if not isinstance(host, SUPPORTED) or not host.has_device_law:
        return None
    return DeviceSampler(host, device)


__all__ = ["DeviceSampler", "PositiveIndex", "device_sampler"]
